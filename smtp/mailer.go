package smtp

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/mail"
	"net/textproto"
	"strings"
	"time"

	"github.com/hestami/hestami/auth"
)

// Mailer mails people: sign-in codes, new-device notices, recovery steps. It
// goes through the same server, encryption and authentication rules as Sender
// (never in the clear), one connection per message, each message to the one
// address it names. It is safe for concurrent use.
type Mailer struct {
	*transport
	from   *mail.Address
	prefix string
	now    func() time.Time
	domain string
}

var _ auth.Mailer = (*Mailer)(nil)

// NewMailer checks cfg and returns its Mailer, reporting every problem at
// once. cfg is Sender's Config, except that To must be empty (each mail names
// its recipient), SubjectPrefix starts subjects only when set, and Name is not
// used. Errors point at configuration section section ("auth.email"; empty
// means that).
func NewMailer(cfg Config, section string) (*Mailer, error) {
	if section == "" {
		section = "auth.email"
	}
	t, from, errs := newTransport(cfg, section)
	if len(cfg.To) > 0 {
		errs = append(errs, errors.New("to: leave it empty: mail to people goes to each person's own address"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s: %w", section, errors.Join(errs...))
	}
	m := &Mailer{transport: t, from: from, prefix: cfg.SubjectPrefix, now: cfg.Now, domain: domainOf(from)}
	if m.now == nil {
		m.now = time.Now
	}
	return m, nil
}

// SendMail mails m to m.To and returns nil once the server accepted it. An
// address the server says does not exist (a 5.1.x refusal of the recipient) is
// an *auth.Error with CodeInvalid and a message for the person; every other
// failure is an error for the logs that says what failed (and never holds the
// password).
func (m *Mailer) SendMail(ctx context.Context, msg auth.Mail) error {
	to, err := mail.ParseAddress(msg.To)
	if err != nil || strings.ContainsAny(msg.To, "\r\n") {
		return auth.Errorf(auth.CodeInvalid, "%q is not an email address. Check it, or use another one.", oneLine(msg.To)).WithCause(err)
	}
	now := m.now()
	id, err := messageID(now, m.domain)
	if err != nil {
		return fmt.Errorf("mail %s: %w", to.Address, err)
	}
	subject := oneLine(msg.Subject)
	if m.prefix != "" {
		subject = m.prefix + " " + subject
	}
	data, err := textMessage([][2]string{
		{"Date", now.Format(time.RFC1123Z)},
		{"From", m.from.String()},
		{"To", to.String()},
		{"Subject", mime.QEncoding.Encode("utf-8", truncate(subject, 200))},
		{"Message-ID", id},
	}, msg.Text)
	if err != nil {
		return fmt.Errorf("mail %s: %w", to.Address, err)
	}
	err = m.deliver(ctx, m.from.Address, []string{to.Address}, data)
	var re *RecipientError
	var te *textproto.Error
	if errors.As(err, &re) && errors.As(err, &te) && te.Code >= 500 && strings.HasPrefix(te.Msg, "5.1.") {
		return auth.Errorf(auth.CodeInvalid, "The mail server for %s says that address does not exist. Check it, or use another address.", to.Address).WithCause(err)
	}
	if err != nil {
		return fmt.Errorf("mail %s: %w", to.Address, err)
	}
	return nil
}
