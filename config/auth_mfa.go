package config

import (
	"fmt"
	"net/url"
	"time"
)

// AuthMFA configures multi-factor authentication in the auth service (docs/mfa.md).
type AuthMFA struct {
	// KeysFile holds the keys TOTP secrets are sealed with (HESTAMI_MFA_KEYS_FILE):
	// one `id:base64` line per 32-byte key, the first one sealing; older ones
	// below it still open. Required unless dev_mode (which makes a throwaway key).
	KeysFile string `yaml:"keys_file"`
	// StaffGracePeriod is how long a new staff member has to set up MFA.
	StaffGracePeriod time.Duration `yaml:"staff_grace_period"`
	// StepUpMaxAge is how recent a second factor must be for sensitive actions.
	StepUpMaxAge time.Duration `yaml:"step_up_max_age"`
	// RememberDeviceDays is how long "remember this device" skips the challenge.
	RememberDeviceDays int `yaml:"remember_device_days"`
	// ProviderServiceTypes are the service providers' trades for which MFA is
	// required (gas, electrical...).
	ProviderServiceTypes []string `yaml:"provider_service_types"`
	// IPRules restrict where users may sign in from, one rule a line:
	// "for=staff; allow=10.0.0.0/8; network=the office or VPN network".
	IPRules []string `yaml:"ip_rules"`
	// RedisURL shares rate limits and lockouts between replicas
	// (HESTAMI_REDIS_URL; rediss:// for TLS); empty: in memory, one replica.
	RedisURL string `yaml:"redis_url"`
	// GeoIPDatabase is a MaxMind GeoLite2/GeoIP2 City (or Country) database file
	// (HESTAMI_GEOIP_DATABASE), for new-country and impossible-travel checks.
	GeoIPDatabase string       `yaml:"geoip_database"`
	SMS           AuthSMS      `yaml:"sms"`
	Helpdesk      AuthHelpdesk `yaml:"helpdesk"`
}

// AuthSMS configures the SMS sender: Twilio, or "log" (development: codes go to
// the log).
type AuthSMS struct {
	Sender              string `yaml:"sender"` // twilio, log, or empty: off
	AccountSID          string `yaml:"account_sid"`
	AuthToken           string `yaml:"auth_token"` // HESTAMI_TWILIO_AUTH_TOKEN(_FILE)
	From                string `yaml:"from"`
	MessagingServiceSID string `yaml:"messaging_service_sid"`
	BaseURL             string `yaml:"base_url"` // default Twilio's API
	// DefaultRegion reads national numbers (CLDR region code: US, PT, GB...).
	DefaultRegion string `yaml:"default_region"`
}

// AuthHelpdesk is where account-recovery requests open a support ticket.
type AuthHelpdesk struct {
	URL       string `yaml:"url"`
	Token     string `yaml:"token"` // HESTAMI_HELPDESK_TOKEN(_FILE)
	IDField   string `yaml:"id_field"`
	AllowHTTP bool   `yaml:"allow_http"` // loopback only
}

// DefaultAuthMFA is the MFA section's defaults.
func DefaultAuthMFA() AuthMFA {
	return AuthMFA{StaffGracePeriod: 24 * time.Hour, StepUpMaxAge: 5 * time.Minute, RememberDeviceDays: 30,
		SMS: AuthSMS{DefaultRegion: "US"}, Helpdesk: AuthHelpdesk{IDField: "id"}}
}

func (m *AuthMFA) loadEnv(str func(string, *string)) {
	str("HESTAMI_MFA_KEYS_FILE", &m.KeysFile)
	str("HESTAMI_REDIS_URL", &m.RedisURL)
	str("HESTAMI_GEOIP_DATABASE", &m.GeoIPDatabase)
	str("HESTAMI_SMS_SENDER", &m.SMS.Sender)
	str("HESTAMI_TWILIO_ACCOUNT_SID", &m.SMS.AccountSID)
	str("HESTAMI_TWILIO_AUTH_TOKEN", &m.SMS.AuthToken)
	str("HESTAMI_TWILIO_FROM", &m.SMS.From)
	str("HESTAMI_HELPDESK_URL", &m.Helpdesk.URL)
	str("HESTAMI_HELPDESK_TOKEN", &m.Helpdesk.Token)
}

func (m AuthMFA) validate(bad func(field, format string, args ...any)) {
	for field, d := range map[string]time.Duration{"auth.mfa.staff_grace_period": m.StaffGracePeriod, "auth.mfa.step_up_max_age": m.StepUpMaxAge} {
		if d <= 0 {
			bad(field, "%s: want a positive duration, e.g. 24h", d)
		}
	}
	if m.RememberDeviceDays < 0 || m.RememberDeviceDays > 365 {
		bad("auth.mfa.remember_device_days", "%d: want 0 (never remember) to 365", m.RememberDeviceDays)
	}
	switch m.SMS.Sender {
	case "", "log":
	case "twilio":
		if m.SMS.AccountSID == "" || m.SMS.AuthToken == "" || (m.SMS.From == "" && m.SMS.MessagingServiceSID == "") {
			bad("auth.mfa.sms", "twilio needs account_sid, auth_token (HESTAMI_TWILIO_AUTH_TOKEN_FILE) and from or messaging_service_sid")
		}
	default:
		bad("auth.mfa.sms.sender", "%q: want twilio, log or empty", m.SMS.Sender)
	}
	if m.RedisURL != "" {
		if u, err := url.Parse(m.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
			bad("auth.mfa.redis_url", "want redis://host:6379/0 or rediss://... (TLS)")
		}
	}
	if m.Helpdesk.URL != "" {
		if u, err := url.Parse(m.Helpdesk.URL); err != nil || u.Host == "" {
			bad("auth.mfa.helpdesk.url", "%q: want the helpdesk API's ticket URL", m.Helpdesk.URL)
		}
	}
}

// validateServeMFA reports what auth serve needs for MFA outside development.
func (m AuthMFA) validateServe(dev bool) []string {
	var errs []string
	if m.KeysFile == "" && !dev {
		errs = append(errs, "auth.mfa.keys_file: TOTP secrets are sealed at rest: set HESTAMI_MFA_KEYS_FILE to a file with a line id:KEY (KEY: openssl rand -base64 32)")
	}
	if m.SMS.Sender == "log" && !dev {
		errs = append(errs, fmt.Sprintf("auth.mfa.sms.sender: %q writes codes to the log: development only; use twilio", m.SMS.Sender))
	}
	return errs
}
