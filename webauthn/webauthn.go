// Package webauthn is the auth service's WebAuthn relying party, for passkeys and
// security keys as second factors, over github.com/go-webauthn/webauthn. It
// implements auth.WebAuthn (the ceremonies, without state of their own: package
// auth keeps each ceremony's session, once, for five minutes) and ships the
// browser script the pages use (Script).
package webauthn

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	gowebauthn "github.com/go-webauthn/webauthn/webauthn"

	"github.com/hestami/hestami/auth"
)

// Config is the relying party.
type Config struct {
	// PublicURL is where browsers reach the auth service
	// (https://auth.hestami.example): its host is the relying party ID and its
	// origin the only origin whose answers are accepted, so a passkey answers
	// only this site (phishing resistance).
	PublicURL string
	// DisplayName is the relying party's name that authenticators show;
	// "Hestami" if empty.
	DisplayName string
	// Timeout is how long the browser gives the person to answer;
	// auth.PasskeyCeremonyTimeout if zero.
	Timeout time.Duration
}

// RelyingParty runs WebAuthn ceremonies for one site.
type RelyingParty struct {
	wa     *gowebauthn.WebAuthn
	rpID   string
	origin string
}

var _ auth.WebAuthn = (*RelyingParty)(nil)

// New returns the relying party for cfg. The public URL must be an http(s)
// origin whose host is a domain name (WebAuthn refuses IP addresses: use
// localhost in development).
func New(cfg Config) (*RelyingParty, error) {
	u, err := url.Parse(cfg.PublicURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.RawQuery != "" {
		return nil, fmt.Errorf("webauthn: public url %q: want an origin such as https://auth.hestami.example", cfg.PublicURL)
	}
	rpID := strings.ToLower(u.Hostname())
	if err := protocol.ValidateRPID(rpID); err != nil {
		return nil, fmt.Errorf("webauthn: public url %q: its host %q cannot be a WebAuthn relying party id (%v); use a domain name (localhost in development)", cfg.PublicURL, rpID, err)
	}
	if cfg.DisplayName == "" {
		cfg.DisplayName = "Hestami"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = auth.PasskeyCeremonyTimeout
	}
	origin := u.Scheme + "://" + strings.ToLower(u.Host)
	timeout := gowebauthn.TimeoutConfig{Enforce: true, Timeout: cfg.Timeout, TimeoutUVD: cfg.Timeout}
	wa, err := gowebauthn.New(&gowebauthn.Config{
		RPID:                  rpID,
		RPDisplayName:         cfg.DisplayName,
		RPOrigins:             []string{origin},
		AttestationPreference: protocol.PreferNoAttestation,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:      protocol.ResidentKeyRequirementPreferred,
			UserVerification: protocol.VerificationPreferred,
		},
		Timeouts: gowebauthn.TimeoutsConfig{Login: timeout, Registration: timeout},
	})
	if err != nil {
		return nil, fmt.Errorf("webauthn: %w", err)
	}
	return &RelyingParty{wa: wa, rpID: rpID, origin: origin}, nil
}

// RPID is the relying party ID (the public URL's host).
func (rp *RelyingParty) RPID() string { return rp.rpID }

// Origin is the one origin accepted (the public URL's scheme, host and port).
func (rp *RelyingParty) Origin() string { return rp.origin }

// user is an auth.User with its credentials, as go-webauthn sees users. The user
// handle is the user's id: it identifies the account and nothing else.
type user struct {
	u     *auth.User
	creds []gowebauthn.Credential
}

func (w *user) WebAuthnID() []byte   { return []byte(w.u.ID) }
func (w *user) WebAuthnName() string { return w.u.Email }
func (w *user) WebAuthnDisplayName() string {
	if w.u.Name != "" {
		return w.u.Name
	}
	return w.u.Email
}
func (w *user) WebAuthnCredentials() []gowebauthn.Credential { return w.creds }

func newUser(u *auth.User, credentials [][]byte) (*user, error) {
	if u == nil || u.ID == "" {
		return nil, errors.New("no user")
	}
	w := &user{u: u, creds: make([]gowebauthn.Credential, len(credentials))}
	for i, data := range credentials {
		if err := json.Unmarshal(data, &w.creds[i]); err != nil {
			return nil, fmt.Errorf("decode stored credential %d: %w", i, err)
		}
		if len(w.creds[i].ID) == 0 || len(w.creds[i].PublicKey) == 0 {
			return nil, fmt.Errorf("decode stored credential %d: no id or public key", i)
		}
	}
	return w, nil
}

// BeginRegistration implements auth.WebAuthn: options for a new credential
// (passkey preferred, user verification preferred, no attestation, excluding u's
// credentials).
func (rp *RelyingParty) BeginRegistration(u *auth.User, credentials [][]byte) (options, session []byte, err error) {
	w, err := newUser(u, credentials)
	if err != nil {
		return nil, nil, fmt.Errorf("webauthn registration: %w", err)
	}
	creation, sd, err := rp.wa.BeginRegistration(w, gowebauthn.WithExclusions(gowebauthn.Credentials(w.creds).CredentialDescriptors()))
	if err != nil {
		return nil, nil, fmt.Errorf("webauthn registration: %w", err)
	}
	return marshalPair(creation, sd)
}

// FinishRegistration implements auth.WebAuthn.
func (rp *RelyingParty) FinishRegistration(u *auth.User, credentials [][]byte, session, response []byte) ([]byte, error) {
	w, err := newUser(u, credentials)
	if err != nil {
		return nil, fmt.Errorf("webauthn registration: %w", err)
	}
	var sd gowebauthn.SessionData
	if err := json.Unmarshal(session, &sd); err != nil {
		return nil, fmt.Errorf("webauthn registration: decode session: %w", err)
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(response)
	if err != nil {
		return nil, rejected("registration", err)
	}
	cred, err := rp.wa.CreateCredential(w, sd, parsed)
	if err != nil {
		return nil, rejected("registration", err)
	}
	for _, c := range w.creds {
		if bytes.Equal(c.ID, cred.ID) {
			return nil, fmt.Errorf("webauthn registration: credential registered already: %w", auth.ErrConflict)
		}
	}
	data, err := json.Marshal(cred)
	if err != nil {
		return nil, fmt.Errorf("webauthn registration: encode credential: %w", err)
	}
	return data, nil
}

// BeginLogin implements auth.WebAuthn.
func (rp *RelyingParty) BeginLogin(u *auth.User, credentials [][]byte) (options, session []byte, err error) {
	w, err := newUser(u, credentials)
	if err != nil {
		return nil, nil, fmt.Errorf("webauthn assertion: %w", err)
	}
	if len(w.creds) == 0 {
		return nil, nil, errors.New("webauthn assertion: the user has no credential")
	}
	assertion, sd, err := rp.wa.BeginLogin(w)
	if err != nil {
		return nil, nil, fmt.Errorf("webauthn assertion: %w", err)
	}
	return marshalPair(assertion, sd)
}

// FinishLogin implements auth.WebAuthn. A signature counter that does not go up
// (go-webauthn's clone warning) is reported in the result, with the credential's
// flag kept set in its Data from then on.
func (rp *RelyingParty) FinishLogin(u *auth.User, credentials [][]byte, session, response []byte) (*auth.WebAuthnAssertion, error) {
	w, err := newUser(u, credentials)
	if err != nil {
		return nil, fmt.Errorf("webauthn assertion: %w", err)
	}
	var sd gowebauthn.SessionData
	if err := json.Unmarshal(session, &sd); err != nil {
		return nil, fmt.Errorf("webauthn assertion: decode session: %w", err)
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		return nil, rejected("assertion", err)
	}
	cred, err := rp.wa.ValidateLogin(w, sd, parsed)
	if err != nil {
		return nil, rejected("assertion", err)
	}
	idx := -1
	for i, c := range w.creds {
		if bytes.Equal(c.ID, cred.ID) {
			idx = i
			break
		}
	}
	if idx < 0 {
		return nil, errors.New("webauthn assertion: the verified credential is not the user's")
	}
	data, err := json.Marshal(cred)
	if err != nil {
		return nil, fmt.Errorf("webauthn assertion: encode credential: %w", err)
	}
	return &auth.WebAuthnAssertion{
		Index: idx, Data: data, CloneWarning: cred.Authenticator.CloneWarning,
		Count: parsed.Response.AuthenticatorData.Counter, StoredCount: w.creds[idx].Authenticator.SignCount,
	}, nil
}

// rejected wraps a verification failure as auth.ErrWebAuthnRejected, with
// go-webauthn's explanation (for the logs and the audit trail; it holds no
// secret).
func rejected(ceremony string, err error) error {
	msg := err.Error()
	var pe *protocol.Error
	if errors.As(err, &pe) {
		msg = pe.Type + ": " + pe.Details
		if pe.DevInfo != "" {
			msg += " (" + pe.DevInfo + ")"
		}
	}
	return fmt.Errorf("webauthn %s: %w: %s", ceremony, auth.ErrWebAuthnRejected, strings.Join(strings.Fields(msg), " "))
}

func marshalPair(options any, session *gowebauthn.SessionData) ([]byte, []byte, error) {
	o, err := json.Marshal(options)
	if err != nil {
		return nil, nil, fmt.Errorf("webauthn: encode options: %w", err)
	}
	s, err := json.Marshal(session)
	if err != nil {
		return nil, nil, fmt.Errorf("webauthn: encode session: %w", err)
	}
	return o, s, nil
}
