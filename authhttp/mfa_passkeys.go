package authhttp

import (
	"encoding/json"
	"net/http"

	"github.com/hestami/hestami/auth"
)

// The passkey pages follow webauthn.Script's contract: a form whose
// data-webauthn-begin endpoint answers JSON {"ceremony", "options"}, and whose
// action is an ordinary form POST with the fields "ceremony" and "response".

var errNoPasskeys = auth.Errorf(auth.CodeUnavailable, "Passkeys are not available on this service. Use another method.")

// passkeyBegin is the answer of a begin endpoint.
type passkeyBegin struct {
	Ceremony string          `json:"ceremony"`
	Options  json.RawMessage `json:"options"`
}

// mfaPasskeyRegisterBegin starts adding a passkey; it answers JSON for the
// script (POST /mfa/setup/passkey/begin).
func (s *Server) mfaPasskeyRegisterBegin(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) || !s.needFresh(w, r, "/mfa/setup") {
		return
	}
	if s.mfa.Passkeys == nil {
		s.fail(w, r, errNoPasskeys)
		return
	}
	_, u := current(r)
	opts, id, err := s.mfa.Passkeys.BeginRegistration(r.Context(), u, r.PostFormValue("name"), s.client(r))
	if err != nil {
		writeJSONError(w, errorStatus(err), err)
		s.logFailure(r, errorStatus(err), err)
		return
	}
	writeJSON(w, http.StatusOK, passkeyBegin{id, opts})
}

// mfaPasskeyRegisterFinish stores the new passkey from the browser's answer
// (POST /mfa/setup/passkey/finish).
func (s *Server) mfaPasskeyRegisterFinish(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	sess, u := current(r)
	d := &mfaSetupPage{Method: auth.MethodWebAuthn}
	if s.mfa.Passkeys == nil {
		s.setupFail(w, r, errNoPasskeys, d)
		return
	}
	_, err := s.mfa.Passkeys.FinishRegistration(r.Context(), u, r.PostFormValue("ceremony"), []byte(r.PostFormValue("response")), s.client(r))
	if err != nil {
		s.setupFail(w, r, err, d)
		return
	}
	s.factorAdded(w, r, sess, u, auth.MethodWebAuthn, "Your passkey is set up.")
}

// mfaPasskeyAssertBegin starts a passkey challenge; it answers JSON for the
// script (POST /mfa/challenge/passkey/begin).
func (s *Server) mfaPasskeyAssertBegin(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	if s.mfa.Passkeys == nil {
		s.fail(w, r, errNoPasskeys)
		return
	}
	_, u := current(r)
	opts, id, err := s.mfa.Passkeys.BeginAssertion(r.Context(), u, s.client(r))
	if err != nil {
		writeJSONError(w, errorStatus(err), err)
		s.logFailure(r, errorStatus(err), err)
		return
	}
	writeJSON(w, http.StatusOK, passkeyBegin{id, opts})
}

// mfaPasskeyAssertFinish checks the browser's passkey answer and continues like
// a code (POST /mfa/challenge/passkey/finish).
func (s *Server) mfaPasskeyAssertFinish(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	sess, u := current(r)
	if s.mfa.Passkeys == nil {
		s.challengeFail(w, r, errNoPasskeys)
		return
	}
	if err := s.checkPasskey(w, r, u, r.PostFormValue("ceremony"), r.PostFormValue("response")); err != nil {
		s.challengeFail(w, r, err)
		return
	}
	s.challengePassed(w, r, sess, u, auth.MethodWebAuthn)
}

// checkPasskey verifies a passkey assertion under the rate limits and the
// lockout.
func (s *Server) checkPasskey(w http.ResponseWriter, r *http.Request, u *auth.User, ceremony, response string) error {
	return s.guarded(w, r, u, func() error {
		return s.mfa.Passkeys.FinishAssertion(r.Context(), u, ceremony, []byte(response), s.client(r))
	})
}
