package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// Fingerprint identifies the effective configuration without revealing it: a
// SHA-256 over the configuration with every secret (passwords, webhook URLs, which
// carry tokens) replaced by a hash of its own, so a changed secret still changes the
// fingerprint. The daemon records it in the audit log at start-up.
func (c Config) Fingerprint() string {
	redact := func(s string) string {
		if s == "" {
			return ""
		}
		sum := sha256.Sum256([]byte("hestami secret\x00" + s))
		return "redacted:" + hex.EncodeToString(sum[:8])
	}
	c.Postgres.Password = redact(c.Postgres.Password)
	hooks := make([]Webhook, len(c.Notifications.Webhooks))
	for i, w := range c.Notifications.Webhooks {
		w.URL = redact(w.URL)
		hooks[i] = w
	}
	c.Notifications.Webhooks = hooks
	if c.Notifications.Email != nil {
		e := *c.Notifications.Email
		e.Password = redact(e.Password)
		c.Notifications.Email = &e
	}
	b, _ := json.Marshal(c)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
