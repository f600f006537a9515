package integration

import "go.uber.org/zap/zapcore"

const zapWarn = zapcore.WarnLevel
