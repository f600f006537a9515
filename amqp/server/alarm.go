package server

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/warren-mq/warren/amqp"
)

// Resource alarms, as RabbitMQ raises them: when free disk space under the
// data directory drops below DiskFreeLimit or the broker's memory rises above
// MemoryLimit, connections that publish are sent connection.blocked and stop
// being read until the alarm clears (then connection.unblocked). Consumers
// keep draining; nothing is dropped.
type alarms struct {
	mu      sync.Mutex
	reasons map[string]bool
	cleared chan struct{} // closed when the last alarm clears
}

func (a *alarms) set(reason string, on bool) (changed bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reasons[reason] == on {
		return false
	}
	wasOn := len(a.reasons) > 0
	if on {
		a.reasons[reason] = true
		if !wasOn {
			a.cleared = make(chan struct{})
		}
	} else {
		delete(a.reasons, reason)
		if wasOn && len(a.reasons) == 0 {
			close(a.cleared)
			a.cleared = nil
		}
	}
	return true
}

// active returns the alarm reason and a channel closed when all alarms
// clear, or "" when none is raised.
func (a *alarms) active() (string, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for r := range a.reasons {
		return r, a.cleared
	}
	return "", nil
}

// SetAlarm raises or clears a resource alarm by hand (tests, operators).
func (s *Server) SetAlarm(reason string, on bool) {
	if s.alarm.set(reason, on) {
		s.log.Warn("resource alarm", zap.String("reason", reason), zap.Bool("raised", on))
	}
}

// Alarms lists the raised alarms.
func (s *Server) Alarms() []string {
	s.alarm.mu.Lock()
	defer s.alarm.mu.Unlock()
	var out []string
	for r := range s.alarm.reasons {
		out = append(out, r)
	}
	return out
}

// watchResources checks memory and disk once a second until stop closes.
func (s *Server) watchResources(stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if s.cfg.MemoryLimit > 0 {
			if rss := processRSS(); rss > 0 {
				s.SetAlarm("memory", rss > s.cfg.MemoryLimit)
			}
		}
		if s.cfg.DataDir != "" && s.cfg.DiskFreeLimit > 0 {
			var st syscall.Statfs_t
			if err := syscall.Statfs(s.cfg.DataDir, &st); err == nil {
				s.SetAlarm("disk", st.Bavail*uint64(st.Bsize) < s.cfg.DiskFreeLimit)
			}
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// processRSS returns this process's resident set size in bytes, or 0.
func processRSS() uint64 {
	return readKB("/proc/self/status", "VmRSS:")
}

// TotalMemory returns the machine's memory in bytes, or 0.
func TotalMemory() uint64 {
	return readKB("/proc/meminfo", "MemTotal:")
}

func readKB(path, field string) uint64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n * 1024
		}
	}
	return 0
}

// waitAlarm blocks a publishing connection while an alarm is raised,
// telling the client first when it asked for connection.blocked.
func (c *conn) waitAlarm() {
	reason, cleared := c.srv.alarm.active()
	if reason == "" {
		return
	}
	if c.capBlocked {
		text := "low on memory"
		if reason == "disk" {
			text = "low on disk space"
		}
		c.sendMethod(0, &amqp.ConnectionBlocked{Reason: text})
	}
	c.flushConfirms()
	select {
	case <-cleared:
	case e := <-c.forced:
		c.forced <- e // handled by the read loop
	}
	if c.capBlocked {
		c.sendMethod(0, &amqp.ConnectionUnblocked{})
	}
}
