// Package totp is auth.TOTP with github.com/pquerna/otp: time-based one-time
// passwords (RFC 6238) with the parameters every authenticator app supports
// (Google Authenticator, Microsoft Authenticator, Authy): HMAC-SHA1, 6 digits,
// a 30-second step, a 160-bit secret.
package totp

import (
	"crypto/subtle"
	"fmt"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	pqtotp "github.com/pquerna/otp/totp"

	"github.com/hestami/hestami/auth"
)

// The parameters of the codes: the defaults of every authenticator app.
const (
	Period = 30 // seconds a code lasts (one time step)
	Digits = 6
)

// Authenticator is auth.TOTP.
type Authenticator struct{}

var _ auth.TOTP = Authenticator{}

// Generate returns a new random secret (base32, for typing in by hand) and its
// otpauth://totp/ URL (for the QR code) naming issuer and account.
func (Authenticator) Generate(issuer, account string) (secret, url string, err error) {
	return Generate(issuer, account)
}

// Validate reports whether code is the code of secret at a time step within
// skew steps of at's, and which step it matched (for replay protection).
func (Authenticator) Validate(secret, code string, at time.Time, skew uint) (step int64, ok bool) {
	return Validate(secret, code, at, skew)
}

// Generate returns a new random secret (base32, no padding, 160 bits from
// crypto/rand) and its otpauth://totp/ URL naming issuer and account.
func Generate(issuer, account string) (secret, url string, err error) {
	key, err := pqtotp.Generate(pqtotp.GenerateOpts{
		Issuer: issuer, AccountName: account, Period: Period, SecretSize: 20,
		Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		return "", "", fmt.Errorf("generate totp secret: %w", err)
	}
	return key.Secret(), key.URL(), nil
}

// Step is the RFC 6238 time step of t: whole periods since the Unix epoch.
func Step(t time.Time) int64 {
	return floorDiv(t.Unix(), Period)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// Code returns the 6-digit code of secret at t (what the authenticator app
// shows): for tests, and for people setting up a secret by hand.
func Code(secret string, t time.Time) (string, error) {
	return stepCode(secret, Step(t))
}

func stepCode(secret string, step int64) (string, error) {
	if step < 0 {
		return "", fmt.Errorf("totp code: time step %d before 1970", step)
	}
	c, err := hotp.GenerateCodeCustom(secret, uint64(step), hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return "", fmt.Errorf("totp code: %w", err)
	}
	return c, nil
}

// Normalize returns code without the spaces and dashes people type ("123 456").
func Normalize(code string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' || r == '\t' {
			return -1
		}
		return r
	}, strings.TrimSpace(code))
}

// Validate reports whether code (6 digits; spaces and dashes ignored) is
// secret's code at a step within skew steps of at's, and which step matched,
// the earliest if several did. Every candidate step is computed and compared in
// constant time, so how long it takes does not tell which step (or digit)
// matched. A secret that is not base32 validates nothing.
func Validate(secret, code string, at time.Time, skew uint) (step int64, ok bool) {
	code = Normalize(code)
	if len(code) != Digits {
		return 0, false
	}
	now := Step(at)
	matched := int64(-1)
	for s := now - int64(skew); s <= now+int64(skew); s++ {
		want, err := stepCode(secret, s)
		if err != nil {
			continue
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && matched < 0 {
			matched = s
		}
	}
	if matched < 0 {
		return 0, false
	}
	return matched, true
}
