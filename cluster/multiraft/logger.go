package multiraft

import (
	"fmt"

	"go.uber.org/zap"
)

// raftLogger adapts zap to raft.Logger. Raft's chatty Info level (elections,
// term changes) goes to zap's Debug unless it is about leadership.
type raftLogger struct{ s *zap.SugaredLogger }

func newRaftLogger(l *zap.Logger) raftLogger {
	return raftLogger{l.WithOptions(zap.AddCallerSkip(1)).Sugar()}
}

func (l raftLogger) Debug(v ...any)                 { l.s.Debug(v...) }
func (l raftLogger) Debugf(format string, v ...any) { l.s.Debugf(format, v...) }
func (l raftLogger) Info(v ...any)                  { l.s.Debug(v...) }
func (l raftLogger) Infof(format string, v ...any)  { l.s.Debugf(format, v...) }
func (l raftLogger) Warning(v ...any)               { l.s.Warn(v...) }
func (l raftLogger) Warningf(format string, v ...any) {
	l.s.Warnf(format, v...)
}
func (l raftLogger) Error(v ...any)                 { l.s.Error(v...) }
func (l raftLogger) Errorf(format string, v ...any) { l.s.Errorf(format, v...) }

// Fatal and Panic panic rather than exit: raft calls them on broken
// invariants, and os.Exit belongs to cmd/ alone.
func (l raftLogger) Fatal(v ...any) { l.Panic(v...) }
func (l raftLogger) Fatalf(format string, v ...any) {
	l.Panicf(format, v...)
}
func (l raftLogger) Panic(v ...any) {
	msg := fmt.Sprint(v...)
	l.s.Error(msg)
	panic(msg)
}
func (l raftLogger) Panicf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.s.Error(msg)
	panic(msg)
}
