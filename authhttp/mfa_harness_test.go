package authhttp_test

import (
	"crypto/rand"
	"log/slog"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/authhttp"
	"github.com/hestami/hestami/oidcprovider"
	"github.com/hestami/hestami/phonenumber"
	"github.com/hestami/hestami/postgres"
	"github.com/hestami/hestami/smtp"
	"github.com/hestami/hestami/smtp/smtptest"
	"github.com/hestami/hestami/totp"
	"github.com/hestami/hestami/twilio"
	"github.com/hestami/hestami/twilio/twiliotest"
	"github.com/hestami/hestami/webauthn"
)

// clock is a test clock that starts at the real time and moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// mfaEnv is an env with MFA on: every component over the test's database, a
// real SMTP server for the mail, and a clock the test moves.
type mfaEnv struct {
	*env
	clock    *clock
	mfaStore *postgres.MFAStore
	mail     *smtptest.Server
	sms      *twiliotest.Server
	opts     *authhttp.MFAOptions
}

// mfaEnvOptions tune newMFAEnv.
type mfaEnvOptions struct {
	policy         *auth.MFAPolicy
	lockout        auth.LockoutConfig
	risk           auth.RiskConfig
	trustedProxies []netip.Prefix
	oidcClients    []oidcprovider.Client
	tweak          func(o *authhttp.MFAOptions)
}

func newMFAEnv(t *testing.T, o mfaEnvOptions) *mfaEnv {
	t.Helper()
	m := &mfaEnv{clock: newClock(), mail: smtptest.Start(t, smtptest.Options{}), sms: twiliotest.New(t)}
	m.env = newEnv(t, envOptions{now: m.clock.Now, trustedProxies: o.trustedProxies, oidcClients: o.oidcClients, mfa: func(e *env, pool *pgxpool.Pool, logger *slog.Logger) *authhttp.MFAOptions {
		now := m.clock.Now
		m.mfaStore = postgres.NewMFAStore(pool)
		sealer, err := auth.NewSealer(map[string][]byte{"k1": randomKey()}, "k1")
		if err != nil {
			t.Fatal(err)
		}
		mailer, err := smtp.NewMailer(smtp.Config{Host: m.mail.Host, Port: m.mail.Port, Security: smtp.StartTLS,
			From: "Hestami <no-reply@hestami.example>", RootCAs: m.mail.RootCAs(), Timeout: 10 * time.Second}, "")
		if err != nil {
			t.Fatal(err)
		}
		audit := e.svc.Audit
		limiter := auth.NewMemoryLimiter(now)
		factors := auth.NewFactors(auth.FactorsConfig{}, m.mfaStore, sealer, totp.Authenticator{}, audit, now, logger)
		texts, err := twilio.New(twilio.Config{AccountSID: twiliotest.AccountSID, AuthToken: twiliotest.AuthToken, From: "+15005550006", BaseURL: m.sms.URL})
		if err != nil {
			t.Fatal(err)
		}
		codes := auth.NewCodes(auth.CodesConfig{}, postgres.NewCodeStore(pool), m.mfaStore, m.mfaStore, mailer, texts, phonenumber.Numbers{}, limiter, audit, now, logger)
		devices, err := auth.NewDevices(auth.DevicesConfig{TrustKeys: [][]byte{randomKey()}, PublicURL: e.base}, postgres.NewDeviceStore(pool), mailer, audit, now, logger)
		if err != nil {
			t.Fatal(err)
		}
		recovery, err := auth.NewRecovery(auth.RecoveryConfig{PublicURL: e.base, CodeKey: randomKey()}, postgres.NewRecoveryStore(pool), m.mfaStore,
			mailer, nil, limiter, factors.RecoveryReset, audit, now, logger)
		if err != nil {
			t.Fatal(err)
		}
		rp, err := webauthn.New(webauthn.Config{PublicURL: e.base})
		if err != nil {
			t.Fatal(err)
		}
		policy := auth.DefaultMFAPolicy()
		if o.policy != nil {
			policy = *o.policy
		}
		m.opts = &authhttp.MFAOptions{
			Policy: policy, Factors: factors, Settings: m.mfaStore, Codes: codes,
			Passkeys: auth.NewPasskeys(rp, m.mfaStore, postgres.NewPasskeyStore(pool), audit, now, logger), PasskeyScript: webauthn.Script,
			Devices: devices, Recovery: recovery, Mailer: mailer,
			Risk:     auth.NewRisk(postgres.NewSignInStore(pool), nil, o.risk, audit, now, logger),
			Lockout:  auth.NewLockout(auth.NewMemoryLockoutStore(now), o.lockout, audit, now, logger),
			Throttle: auth.NewThrottle(limiter, auth.RateLimits{}, logger),
		}
		if o.tweak != nil {
			o.tweak(m.opts)
		}
		return m.opts
	}})
	return m
}

func randomKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}

// newUser creates an invited account of type t with roles (as an administrator
// would) and returns it with the profile that claims it at provider alpha.
func (m *mfaEnv) newUser(t *testing.T, typ auth.UserType, email string, roles ...string) (*auth.User, auth.Profile) {
	t.Helper()
	u, err := m.svc.CreateUser(t.Context(), nil, auth.NewUser{Type: typ, Email: email, Name: "Person " + email, Roles: roles}, auth.Client{})
	if err != nil {
		t.Fatal(err)
	}
	return u, profile("alpha", randomID(), email)
}

// mustAt fails the test unless p ended at path with status 200.
func mustAt(t *testing.T, p *page, path string) {
	t.Helper()
	if p.StatusCode != 200 || p.Request.URL.Path != path {
		t.Fatalf("ended at %s with %d, want %s:\n%s", p.Request.URL, p.StatusCode, path, text(p.body))
	}
}

var secretRE = regexp.MustCompile(`data-secret="([A-Z2-7]+)"`)

// setUpTOTP runs the wizard's authenticator-app step from the setup page p and
// returns the secret and the backup codes page.
func (m *mfaEnv) setUpTOTP(t *testing.T, b *browser, p *page) (string, *page) {
	t.Helper()
	p = b.submit(p, "/mfa/setup/totp", nil)
	mustAt(t, p, "/mfa/setup/totp")
	match := secretRE.FindStringSubmatch(p.body)
	if match == nil {
		t.Fatalf("no secret on the TOTP page:\n%s", p.body)
	}
	secret := match[1]
	p = b.submit(p, "/mfa/setup/totp/confirm", url.Values{"code": {m.code(t, secret, 0)}})
	return secret, p
}

// code is secret's TOTP code steps 30-second steps from the clock's now.
func (m *mfaEnv) code(t *testing.T, secret string, steps int) string {
	t.Helper()
	c, err := totp.Code(secret, m.clock.Now().Add(time.Duration(steps)*30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var backupRE = regexp.MustCompile(`<li><code>([0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{2})</code></li>`)

// backupCodes are the codes a backup codes page shows.
func backupCodes(t *testing.T, p *page) []string {
	t.Helper()
	var out []string
	for _, m := range backupRE.FindAllStringSubmatch(p.body, -1) {
		out = append(out, m[1])
	}
	if len(out) != auth.BackupCodeCount {
		t.Fatalf("%d backup codes on the page, want %d:\n%s", len(out), auth.BackupCodeCount, text(p.body))
	}
	return out
}

var mailCodeRE = regexp.MustCompile(`\b(\d{6,8})\b`)

// mailTo returns the mails to addr, oldest first.
func (m *mfaEnv) mailTo(t *testing.T, addr string) []smtptest.Parsed {
	t.Helper()
	var out []smtptest.Parsed
	for _, msg := range m.mail.Messages() {
		for _, to := range msg.To {
			if strings.EqualFold(to, addr) {
				out = append(out, msg.Parse(t))
			}
		}
	}
	return out
}

// lastCode is the code in the latest mail to addr.
func (m *mfaEnv) lastCode(t *testing.T, addr string) string {
	t.Helper()
	mails := m.mailTo(t, addr)
	if len(mails) == 0 {
		t.Fatalf("no mail to %s", addr)
	}
	last := mails[len(mails)-1]
	match := mailCodeRE.FindStringSubmatch(last.Subject + "\n" + last.Body)
	if match == nil {
		t.Fatalf("no code in the mail to %s: %q\n%s", addr, last.Subject, last.Body)
	}
	return match[1]
}

// audited reports whether the audit log has an event with action and outcome
// about user (as actor or subject).
func (m *mfaEnv) audited(t *testing.T, userID, action, outcome string) bool {
	t.Helper()
	evs, err := m.store.AuditEvents(t.Context(), auth.AuditFilter{UserID: userID, Action: action, Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Outcome == outcome {
			return true
		}
	}
	return false
}

// lastText is the code in the latest text message to number (E.164).
func (m *mfaEnv) lastText(t *testing.T, number string) string {
	t.Helper()
	msgs := m.sms.Messages()
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].To == number && !msgs[i].Refused {
			if match := mailCodeRE.FindStringSubmatch(msgs[i].Body); match != nil {
				return match[1]
			}
		}
	}
	t.Fatalf("no text message with a code to %s: %+v", number, msgs)
	return ""
}
