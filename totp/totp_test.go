package totp_test

import (
	"encoding/base32"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	pqtotp "github.com/pquerna/otp/totp"

	"github.com/hestami/hestami/totp"
)

// rfcSecret is RFC 6238 Appendix B's SHA1 key, "12345678901234567890", in base32.
var rfcSecret = base32.StdEncoding.EncodeToString([]byte("12345678901234567890"))

// rfcVectors are RFC 6238 Appendix B's SHA1 test vectors (8 digits).
var rfcVectors = []struct {
	unix int64
	code string
}{
	{59, "94287082"},
	{1111111109, "07081804"},
	{1111111111, "14050471"},
	{1234567890, "89005924"},
	{2000000000, "69279037"},
	{20000000000, "65353130"},
}

func TestRFC6238Vectors(t *testing.T) {
	t.Parallel()
	for _, v := range rfcVectors {
		at := time.Unix(v.unix, 0).UTC()
		// The 8-digit codes, as the RFC gives them, prove the secret and the
		// step are read the RFC's way.
		eight, err := pqtotp.GenerateCodeCustom(rfcSecret, at, pqtotp.ValidateOpts{Period: 30, Digits: otp.DigitsEight, Algorithm: otp.AlgorithmSHA1})
		if err != nil || eight != v.code {
			t.Errorf("T=%d: 8-digit code %q, %v; RFC 6238 says %s", v.unix, eight, err, v.code)
		}
		// Authenticator apps show 6 digits: the last 6 of the same truncation.
		want := v.code[2:]
		got, err := totp.Code(rfcSecret, at)
		if err != nil || got != want {
			t.Errorf("T=%d: Code = %q, %v; want %s", v.unix, got, err, want)
		}
		step, ok := totp.Validate(rfcSecret, want, at, 0)
		if !ok || step != v.unix/30 {
			t.Errorf("T=%d: Validate(%s) = %d, %t; want step %d, true", v.unix, want, step, ok, v.unix/30)
		}
	}
}

func TestValidateSkew(t *testing.T) {
	t.Parallel()
	at := time.Unix(1234567890, 0)
	code, err := totp.Code(rfcSecret, at)
	if err != nil {
		t.Fatal(err)
	}
	step := totp.Step(at)
	for _, tc := range []struct {
		name  string
		shift time.Duration
		skew  uint
		ok    bool
	}{
		{"same step", 0, 1, true},
		{"one step later (phone slow)", 30 * time.Second, 1, true},
		{"one step earlier (phone fast)", -30 * time.Second, 1, true},
		{"two steps later", 60 * time.Second, 1, false},
		{"two steps earlier", -60 * time.Second, 1, false},
		{"one step later without skew", 30 * time.Second, 0, false},
		{"two steps later with skew 2", 60 * time.Second, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := totp.Validate(rfcSecret, code, at.Add(tc.shift), tc.skew)
			if ok != tc.ok || ok && got != step {
				t.Errorf("Validate at %v = %d, %t; want %t (step %d)", tc.shift, got, ok, tc.ok, step)
			}
		})
	}
}

func TestValidateInput(t *testing.T) {
	t.Parallel()
	at := time.Unix(59, 0)
	for _, tc := range []struct {
		name, code string
		ok         bool
	}{
		{"code", "287082", true},
		{"spaced as apps show it", "287 082", true},
		{"surrounding space", " 287082\t", true},
		{"dashed", "287-082", true},
		{"wrong", "287083", false},
		{"8 digits", "94287082", false},
		{"5 digits", "28708", false},
		{"empty", "", false},
		{"letters", "28708a", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := totp.Validate(rfcSecret, tc.code, at, 1); ok != tc.ok {
				t.Errorf("Validate(%q) = %t, want %t", tc.code, ok, tc.ok)
			}
		})
	}
	if _, ok := totp.Validate("not base32!", "287082", at, 1); ok {
		t.Error("a secret that is not base32 validated a code")
	}
	if _, ok := totp.Validate(rfcSecret, "287082", time.Unix(-10, 0), 1); ok {
		t.Error("a time before 1970 validated a code")
	}
}

func TestGenerate(t *testing.T) {
	t.Parallel()
	secret, raw, err := totp.Generate("Hestami", "ann@example.com")
	if err != nil {
		t.Fatal(err)
	}
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
	if err != nil || len(key) != 20 {
		t.Fatalf("secret %q: %d bytes, %v; want 20 bytes of base32", secret, len(key), err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Scheme != "otpauth" || u.Host != "totp" || u.Path != "/Hestami:ann@example.com" || q.Get("secret") != secret ||
		q.Get("issuer") != "Hestami" || q.Get("algorithm") != "SHA1" || q.Get("digits") != "6" || q.Get("period") != "30" {
		t.Errorf("URL %s: want otpauth://totp/Hestami:ann@example.com with the secret, issuer Hestami, SHA1, 6 digits, 30 s", raw)
	}
	now := time.Now()
	code, err := totp.Code(secret, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := (totp.Authenticator{}).Validate(secret, code, now, 1); !ok {
		t.Error("the code of a generated secret does not validate")
	}
	other, _, err := (totp.Authenticator{}).Generate("Hestami", "ann@example.com")
	if err != nil || other == secret {
		t.Errorf("two secrets: %q and %q (%v); want different", secret, other, err)
	}
	if _, _, err := totp.Generate("Hestami", ""); err == nil {
		t.Error("Generate without an account name succeeded")
	}
}

func FuzzValidate(f *testing.F) {
	f.Add("287082", int64(59))
	f.Add("", int64(0))
	f.Add("１２３４５６", int64(1e9))
	f.Fuzz(func(t *testing.T, code string, unix int64) {
		if unix < -1e12 || unix > 1e12 {
			return
		}
		_, ok := totp.Validate(rfcSecret, code, time.Unix(unix, 0), 1)
		if ok && len(totp.Normalize(code)) != 6 {
			t.Errorf("Validate accepted %q", code)
		}
		if ok && strings.Trim(totp.Normalize(code), "0123456789") != "" {
			t.Errorf("Validate accepted non-digits %q", code)
		}
	})
}
