package webauthn_test

import (
	"errors"
	"testing"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/webauthn/webauthntest"
)

// FuzzFinish feeds arbitrary browser answers to both ceremonies: whatever a
// client sends, nothing panics, nothing verifies (each run has a fresh
// challenge the corpus cannot know), and the failure is the client's
// (auth.ErrWebAuthnRejected), never an internal error.
func FuzzFinish(f *testing.F) {
	rp := newRP(f)
	a := webauthntest.New(publicURL)
	opts, session, err := rp.BeginRegistration(alice, nil)
	if err != nil {
		f.Fatal(err)
	}
	reg, err := a.Create(opts)
	if err != nil {
		f.Fatal(err)
	}
	cred, err := rp.FinishRegistration(alice, nil, session, reg)
	if err != nil {
		f.Fatal(err)
	}
	creds := [][]byte{cred}
	opts, _, err = rp.BeginLogin(alice, creds)
	if err != nil {
		f.Fatal(err)
	}
	login, err := a.Get(opts)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][]byte{reg, login, nil, []byte("{}"), []byte(`{"id":"","rawId":"","type":"public-key","response":{}}`), []byte("[1,2")} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, resp []byte) {
		_, session, err := rp.BeginRegistration(alice, creds)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rp.FinishRegistration(alice, creds, session, resp); !errors.Is(err, auth.ErrWebAuthnRejected) {
			t.Errorf("FinishRegistration(%q) = %v, want ErrWebAuthnRejected", resp, err)
		}
		_, session, err = rp.BeginLogin(alice, creds)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rp.FinishLogin(alice, creds, session, resp); !errors.Is(err, auth.ErrWebAuthnRejected) {
			t.Errorf("FinishLogin(%q) = %v, want ErrWebAuthnRejected", resp, err)
		}
	})
}
