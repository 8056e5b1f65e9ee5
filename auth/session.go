package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"time"
)

// Session is a signed-in browser or client. The token the client holds is never
// stored: ID is its SHA-256, so a copy of the database signs nobody in.
type Session struct {
	ID         string
	UserID     string
	CreatedAt  time.Time
	LastSeenAt time.Time
	// ExpiresAt is the absolute end, whatever the activity.
	ExpiresAt time.Time
	// IdleTimeout ends the session when it goes unused this long.
	IdleTimeout time.Duration
	IP          string
	UserAgent   string
	// Methods are how the user proved who they are (OIDC amr values: the provider
	// names for a sign-in, "otp", "hwk"... for second factors).
	Methods []string
	// AuthTime is when the user last proved who they are.
	AuthTime time.Time
	// MFAAt is when a second factor was last verified in this session (zero:
	// never): step-up asks for a fresh one.
	MFAAt     time.Time
	RevokedAt time.Time // zero while the session is not revoked
}

// Active reports whether s still signs its user in at now.
func (s *Session) Active(now time.Time) bool {
	return s.RevokedAt.IsZero() && now.Before(s.ExpiresAt) && now.Before(s.LastSeenAt.Add(s.IdleTimeout))
}

// SecondFactors returns the second-factor methods verified in the session.
func (s *Session) SecondFactors() []string {
	var out []string
	for _, m := range s.Methods {
		if IsSecondFactor(m) {
			out = append(out, m)
		}
	}
	return out
}

// NewToken returns a random token of 256 bits, URL-safe.
func NewToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// HashToken is the store key of a session token (or any other bearer secret).
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
