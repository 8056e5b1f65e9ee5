package auth

import (
	"context"
	"log/slog"
)

// LogMailer is the development Mailer: it sends nothing and writes each mail,
// codes and links included, to the log at level Warn, so hestami dev works
// without a mail server. Development only, like LogSMSSender: in production
// configure auth.email (package smtp's Mailer).
type LogMailer struct {
	log *slog.Logger
}

var _ Mailer = (*LogMailer)(nil)

// NewLogMailer returns a LogMailer writing to logger. Development only.
func NewLogMailer(logger *slog.Logger) *LogMailer { return &LogMailer{log: logger} }

// SendMail logs m (development only: it may hold a code) and returns nil.
func (l *LogMailer) SendMail(ctx context.Context, m Mail) error {
	l.log.WarnContext(ctx, "development email (not sent; development only)", "to", m.To, "subject", m.Subject, "text", m.Text)
	return nil
}
