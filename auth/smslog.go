package auth

import (
	"context"
	"log/slog"
)

// LogSMSSender is the development SMSSender: it sends nothing and writes each
// message, code included, to the log at level Warn, so a developer can sign in
// with SMS codes without an SMS provider. It is for development only (hestami
// dev): in production the log would hold live codes, which must never be
// logged; configure package twilio's sender there.
type LogSMSSender struct {
	log *slog.Logger
}

var _ SMSSender = (*LogSMSSender)(nil)

// NewLogSMSSender returns a LogSMSSender writing to logger. Development only.
func NewLogSMSSender(logger *slog.Logger) *LogSMSSender { return &LogSMSSender{log: logger} }

// SendSMS logs m (development only: the body holds the code) and returns nil.
func (s *LogSMSSender) SendSMS(ctx context.Context, m SMS) error {
	s.log.WarnContext(ctx, "development SMS (not sent; development only)", "to", m.To, "body", m.Body)
	return nil
}
