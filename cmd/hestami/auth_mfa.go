package main

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/authhttp"
	"github.com/hestami/hestami/config"
	"github.com/hestami/hestami/geoip"
	"github.com/hestami/hestami/phonenumber"
	"github.com/hestami/hestami/postgres"
	"github.com/hestami/hestami/redis"
	"github.com/hestami/hestami/smtp"
	"github.com/hestami/hestami/totp"
	"github.com/hestami/hestami/twilio"
	"github.com/hestami/hestami/webauthn"
	"github.com/hestami/hestami/webhook"
)

// mfaStack is the MFA components auth serve runs, and what must be done to them
// periodically and at the end.
type mfaStack struct {
	opts     *authhttp.MFAOptions
	codes    *auth.Codes
	passkeys *auth.Passkeys
	risk     *auth.Risk
	geo      *geoip.DB
	close    []func()
}

// deriveKey derives a 32-byte key for purpose from the auth service's secret, so
// one secret (shared by the replicas) keys every HMAC the service needs.
func deriveKey(secret, purpose string) ([]byte, error) {
	return hkdf.Key(sha256.New, []byte(secret), nil, "hestami auth "+purpose, 32)
}

// buildMFA builds the MFA components from cfg.
func (p *Program) buildMFA(ctx context.Context, cfg config.Auth, secret, public string, pool *pgxpool.Pool, svc *auth.Service, now func() time.Time) (*mfaStack, error) {
	log := p.logger
	st := &mfaStack{}
	sealer, err := mfaSealer(cfg, secret)
	if err != nil {
		return nil, err
	}
	keys := map[string][]byte{}
	for _, purpose := range []string{"device trust", "recovery codes", "code pepper"} {
		if keys[purpose], err = deriveKey(secret, purpose); err != nil {
			return nil, err
		}
	}
	mfaStore := postgres.NewMFAStore(pool)
	factors := auth.NewFactors(auth.FactorsConfig{Issuer: "Hestami"}, mfaStore, sealer, totp.Authenticator{}, svc.Audit, now, log)

	var limiter auth.Limiter = auth.NewMemoryLimiter(now)
	var lockStore auth.LockoutStore = auth.NewMemoryLockoutStore(now)
	if cfg.MFA.RedisURL != "" {
		rc, err := redis.Open(ctx, cfg.MFA.RedisURL, nil)
		if err != nil {
			return nil, fmt.Errorf("auth.mfa.redis_url: %w", err)
		}
		st.close = append(st.close, func() { _ = rc.Close() })
		limiter, lockStore = redis.NewLimiter(rc), redis.NewLockoutStore(rc)
	}

	mailer, err := authMailer(cfg, now, log)
	if err != nil {
		return nil, err
	}
	sms, err := smsSender(cfg, log)
	if err != nil {
		return nil, err
	}
	codesCfg := auth.DefaultCodesConfig()
	codesCfg.Pepper = keys["code pepper"]
	var phones auth.PhoneNumbers
	if sms != nil {
		phones = phonenumber.Numbers{}
	}
	var mail auth.Mailer
	if mailer != nil {
		mail = mailer
	}
	st.codes = auth.NewCodes(codesCfg, postgres.NewCodeStore(pool), mfaStore, mfaStore, mail, sms, phones, limiter, svc.Audit, now, log)

	rp, err := webauthn.New(webauthn.Config{PublicURL: public})
	if err != nil {
		return nil, fmt.Errorf("passkeys: %w", err)
	}
	st.passkeys = auth.NewPasskeys(rp, mfaStore, postgres.NewPasskeyStore(pool), svc.Audit, now, log)

	var geo auth.GeoLocator
	if cfg.MFA.GeoIPDatabase != "" {
		if st.geo, err = geoip.Open(cfg.MFA.GeoIPDatabase); err != nil {
			return nil, fmt.Errorf("auth.mfa.geoip_database: %w", err)
		}
		geo = st.geo
		st.close = append(st.close, func() { _ = st.geo.Close() })
	}
	st.risk = auth.NewRisk(postgres.NewSignInStore(pool), geo, auth.DefaultRiskConfig(), svc.Audit, now, log)

	devices, err := auth.NewDevices(auth.DevicesConfig{TrustKeys: [][]byte{keys["device trust"]}, RememberDays: cfg.MFA.RememberDeviceDays,
		PublicURL: public, Location: auth.LocationName(geo)}, postgres.NewDeviceStore(pool), mail, svc.Audit, now, log)
	if err != nil {
		return nil, err
	}

	var recovery *auth.Recovery
	if mail != nil {
		var helpdesk auth.Helpdesk
		if h := cfg.MFA.Helpdesk; h.URL != "" {
			hd, err := webhook.NewHelpdesk(webhook.HelpdeskConfig{URL: h.URL, Token: h.Token, IDField: h.IDField})
			if err != nil {
				return nil, fmt.Errorf("auth.mfa.helpdesk: %w", err)
			}
			helpdesk = hd
		}
		recovery, err = auth.NewRecovery(auth.RecoveryConfig{PublicURL: public, CodeKey: keys["recovery codes"]},
			postgres.NewRecoveryStore(pool), mfaStore, mail, helpdesk, limiter, factors.RecoveryReset, svc.Audit, now, log)
		if err != nil {
			return nil, err
		}
	} else {
		log.Warn("account recovery is off: it mails codes and links, and auth.email is not configured")
	}

	rules, err := auth.ParseIPRules(cfg.MFA.IPRules)
	if err != nil {
		return nil, fmt.Errorf("auth.mfa.ip_rules: %w", err)
	}
	policy := auth.DefaultMFAPolicy()
	staff := policy.Types[auth.TypeStaff]
	staff.SetupGrace = cfg.MFA.StaffGracePeriod
	policy.Types[auth.TypeStaff] = staff
	prov := policy.Types[auth.TypeProvider]
	prov.RequiredServiceTypes = cfg.MFA.ProviderServiceTypes
	policy.Types[auth.TypeProvider] = prov
	policy.StepUpMaxAge = cfg.MFA.StepUpMaxAge

	st.opts = &authhttp.MFAOptions{
		Policy: policy, Factors: factors, Settings: mfaStore, Codes: st.codes,
		Passkeys: st.passkeys, PasskeyScript: webauthn.Script, Devices: devices, Recovery: recovery,
		Risk: st.risk, Mailer: mail, IPRules: rules,
		Lockout:     auth.NewLockout(lockStore, auth.DefaultLockoutConfig(), svc.Audit, now, log),
		Throttle:    auth.NewThrottle(limiter, auth.DefaultRateLimits(), log),
		PhoneRegion: cfg.MFA.SMS.DefaultRegion,
	}
	return st, nil
}

// mfaSealer reads the keys TOTP secrets are sealed with. In development without
// a keys file the key derives from the auth secret (hestami dev keeps that in
// its directory, so secrets survive restarts).
func mfaSealer(cfg config.Auth, secret string) (*auth.Sealer, error) {
	if cfg.MFA.KeysFile == "" {
		if !cfg.DevMode {
			return nil, errors.New("auth.mfa.keys_file: not set (HESTAMI_MFA_KEYS_FILE)")
		}
		k, err := deriveKey(secret, "development seal")
		if err != nil {
			return nil, err
		}
		return auth.NewSealer(map[string][]byte{"dev": k}, "dev")
	}
	b, err := os.ReadFile(cfg.MFA.KeysFile)
	if err != nil {
		return nil, fmt.Errorf("auth.mfa.keys_file: %w", err)
	}
	keys, primary, err := auth.ParseSealerKeys(strings.Split(string(b), "\n"))
	if err != nil {
		return nil, fmt.Errorf("auth.mfa.keys_file %s: %w", cfg.MFA.KeysFile, err)
	}
	return auth.NewSealer(keys, primary)
}

// authMailer returns the mailer for people: auth.email's SMTP server, the log in
// development, or nil (email codes, new-device notices and recovery off).
func authMailer(cfg config.Auth, now func() time.Time, log *slog.Logger) (auth.Mailer, error) {
	e := cfg.Email
	if e == nil {
		if cfg.DevMode {
			return auth.NewLogMailer(log), nil
		}
		log.Warn("auth.email is not configured: no email codes, new-device notices or account recovery")
		return nil, nil
	}
	c := smtp.Config{Host: e.Host, Port: e.Port, Security: smtp.Security(e.TLS), Username: e.Username,
		Password: e.Password, From: e.From, CAFile: e.CAFile, Timeout: e.Timeout, Now: now}
	if e.PasswordFile != "" {
		b, err := os.ReadFile(e.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("auth.email.password_file: %w", err)
		}
		c.Password = string(trimNewline(b))
	}
	return smtp.NewMailer(c, "auth.email")
}

// smsSender returns the configured SMS sender, the log in development, or nil.
func smsSender(cfg config.Auth, log *slog.Logger) (auth.SMSSender, error) {
	s := cfg.MFA.SMS
	switch {
	case s.Sender == "twilio":
		t, err := twilio.New(twilio.Config{AccountSID: s.AccountSID, AuthToken: s.AuthToken, From: s.From,
			MessagingServiceSID: s.MessagingServiceSID, BaseURL: s.BaseURL})
		if err != nil {
			return nil, fmt.Errorf("auth.mfa.sms: %w", err)
		}
		return t, nil
	case s.Sender == "log" || s.Sender == "" && cfg.DevMode:
		return auth.NewLogSMSSender(log), nil
	}
	return nil, nil
}

// housekeeping removes expired codes, ceremonies and old sign-in history, and
// reloads the GeoIP database when its file changed.
func (st *mfaStack) housekeeping(ctx context.Context, log *slog.Logger) {
	if _, err := st.codes.DeleteExpired(ctx); err != nil && ctx.Err() == nil {
		log.Warn("remove expired MFA codes", "err", err)
	}
	if _, err := st.passkeys.DeleteExpired(ctx); err != nil && ctx.Err() == nil {
		log.Warn("remove expired passkey ceremonies", "err", err)
	}
	if _, err := st.risk.Prune(ctx); err != nil && ctx.Err() == nil {
		log.Warn("prune the sign-in history", "err", err)
	}
	if st.geo != nil {
		if _, err := st.geo.ReloadIfChanged(); err != nil {
			log.Warn("reload the GeoIP database", "err", err)
		}
	}
}
