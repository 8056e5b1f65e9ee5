package authhttp

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hestami/hestami/auth"
)

// MFAOptions turn on multi-factor authentication. With Options.MFA nil the
// service signs people in with their provider alone (and the MFA pages and API
// answer 404).
//
// Factors and Settings are required; every other component is optional and
// turns on the features that need it: Codes (email and SMS codes), Passkeys,
// Devices ("remember this device", the device list, new-device emails),
// Recovery, Risk (suspicious-activity signals), IPRules (CIDR allow and deny
// lists), Lockout (backoff after repeated wrong second factors) and Limiter
// (rate limits on sign-in and verification).
type MFAOptions struct {
	// Policy is the MFA policy by user type (auth.DefaultMFAPolicy()).
	Policy auth.MFAPolicy
	// Factors runs TOTP, backup codes and the factor list; required.
	Factors *auth.Factors
	// Settings keeps the per-user MFA settings (deadlines, organization
	// requirement, service types); required.
	Settings auth.MFASettingsStore
	// Codes sends and checks email and SMS codes.
	Codes *auth.Codes
	// Passkeys registers and checks passkeys; PasskeyScript is the browser
	// script its pages need (webauthn.Script), served at /assets/webauthn.js.
	Passkeys      *auth.Passkeys
	PasskeyScript []byte
	// Devices recognises browsers, remembers trusted ones and emails about new
	// ones.
	Devices *auth.Devices
	// Recovery runs account recovery for people who lost every factor.
	Recovery *auth.Recovery
	// Risk assesses sign-ins (new device, new country, impossible travel,
	// bursts of failures); Mailer sends the suspicious-sign-in email it asks
	// for (nil: none sent).
	Risk   *auth.Risk
	Mailer auth.Mailer
	// IPRules refuses sign-ins and requests from addresses outside a user
	// type's or role's allowed ranges.
	IPRules IPRules
	// Lockout pauses the checking of second factors after repeated wrong
	// ones (per account and address, with backoff); Throttle limits sign-ins,
	// verifications and codes sent per address and per account.
	Lockout  *auth.Lockout
	Throttle *auth.Throttle
	// PhoneRegion reads phone numbers typed without a country code
	// (ISO 3166-1, "US"); default "US".
	PhoneRegion string
	// CacheTTL is how long a user's factor list and MFA settings are reused
	// between requests, so that the policy costs no query on most requests
	// (DefaultMFACacheTTL; negative: read them every time). Changes made through this
	// server take effect at once; another replica's (an administrator's reset
	// there, a factor added there) after CacheTTL at most.
	CacheTTL time.Duration
}

// IPRules decides whether a user may use the service from an address
// (auth.IPRules).
type IPRules interface {
	// Check returns nil if u may connect from ip, else an *auth.Error with
	// CodeForbidden saying so (an invalid ip fails every rule that applies).
	Check(u *auth.User, ip netip.Addr) error
}

// validate reports what is missing from o.
func (o *MFAOptions) validate() []string {
	var problems []string
	if o.Factors == nil {
		problems = append(problems, "MFA.Factors is required")
	}
	if o.Settings == nil {
		problems = append(problems, "MFA.Settings is required")
	}
	if o.Passkeys != nil && len(o.PasskeyScript) == 0 {
		problems = append(problems, "MFA.PasskeyScript is required with MFA.Passkeys (webauthn.Script)")
	}
	return problems
}

// DefaultMFACacheTTL is MFAOptions.CacheTTL's default.
const DefaultMFACacheTTL = 2 * time.Second

// TrustCookie holds a browser's "remember this device" token, beside the device
// cookie auth.DeviceCookie (hestami_device).
const TrustCookie = "hestami_trust"

// deviceCookieLifetime is how long the device cookie lives (browsers cap
// cookies at 400 days).
const deviceCookieLifetime = 395 * 24 * time.Hour

// mfaState is what the MFA gate found for a request's session.
type mfaState struct {
	decision auth.MFADecision
	methods  []string // enrolled, confirmed
	settings *auth.MFASettings
	trusted  bool // the browser is a remembered device of the user
}

// mfaClass says which MFA states may reach a route.
type mfaClass int

const (
	// mfaFull: only a session that satisfies the policy (or may skip setup).
	mfaFull mfaClass = iota
	// mfaAlways: any signed-in session (sign-out, /api/v1/me).
	mfaAlways
	// mfaChallenge: also a session that still has to answer a challenge
	// (the challenge pages, recovery).
	mfaChallenge
	// mfaSetup: also a session that still has to set up MFA (the wizard).
	mfaSetup
)

// mfaClassOf is the class of a route pattern.
func mfaClassOf(pattern string) mfaClass {
	method, path, _ := strings.Cut(pattern, " ")
	switch {
	case pattern == "POST /signout", pattern == "POST /api/v1/signout", pattern == "GET /api/v1/me",
		pattern == "GET /api/v1/me/assurance", pattern == "GET /api/v1/me/mfa", pattern == "POST /api/v1/stepup",
		pattern == "GET /mfa/setup", pattern == "GET /account/security/backup-codes":
		return mfaAlways
	case strings.HasPrefix(path, "/mfa/challenge"), strings.HasPrefix(path, "/api/v1/mfa/challenge"),
		strings.HasPrefix(path, "/mfa/recover"), path == "/api/v1/me/recovery" || strings.HasPrefix(path, "/api/v1/me/recovery/"):
		return mfaChallenge
	case strings.HasPrefix(path, "/mfa/setup"), strings.HasPrefix(path, "/api/v1/me/factors"),
		path == "/mfa/backup-codes/download", method == "POST" && path == "/api/v1/me/backup-codes":
		return mfaSetup
	}
	return mfaFull
}

// allows reports whether a session in decision d may reach a route of class c.
func (c mfaClass) allows(d auth.MFADecision) bool {
	switch {
	case c == mfaAlways || !d.Action.Gates():
		return true
	case d.Action == auth.MFAChallenge:
		return c == mfaChallenge
	case d.Action == auth.MFASetupRequired:
		return c == mfaSetup || c == mfaChallenge
	}
	return false // blocked
}

// requireMFA applies the MFA policy (and the IP rules, but to sign-out) to a
// signed-in request of the route pattern:
// a session that still owes a second factor, or must set one up, reaches only
// the routes of its class; pages are sent to the challenge or the wizard, API
// calls get 403 with code mfa_required and what is needed.
func (s *Server) requireMFA(pattern string, next http.Handler) http.Handler {
	if s.mfa == nil {
		return next
	}
	class := mfaClassOf(pattern)
	// Signing out works from anywhere: a refused network must not keep a
	// session alive.
	checkIP := pattern != "POST /signout" && pattern != "POST /api/v1/signout"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, u := current(r)
		if checkIP && s.mfa.IPRules != nil {
			if err := s.checkIP(r, u); err != nil {
				s.fail(w, r, err)
				return
			}
		}
		st, err := s.mfaCheck(r, sess, u, auth.PurposeSignIn, auth.MFARisk{})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if v, _ := r.Context().Value(ctxKey{}).(*signedInUser); v != nil {
			v.mfa = st
		}
		if !class.allows(st.decision) {
			s.mfaRequired(w, r, st.decision)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// checkIP applies the IP rules to u at the request's client address; a
// refusal is audited.
func (s *Server) checkIP(r *http.Request, u *auth.User) error {
	if s.mfa == nil || s.mfa.IPRules == nil {
		return nil
	}
	ip, _ := netip.ParseAddr(s.clientIP(r)) // invalid: the zero Addr, refused by any rule that applies
	err := s.mfa.IPRules.Check(u, ip)
	if err != nil {
		c := s.client(r)
		if aerr := s.svc.Audit(r.Context(), &auth.AuditEvent{Action: "ip.refuse", Outcome: auth.OutcomeFailure, ActorID: u.ID,
			IP: c.IP, UserAgent: c.UserAgent, Detail: truncate(err.Error(), 300)}); aerr != nil {
			s.log.Error("audit ip refusal", "err", aerr)
		}
	}
	return err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// currentMFA returns the MFA state requireMFA found (nil when MFA is off).
func currentMFA(r *http.Request) *mfaState {
	v, _ := r.Context().Value(ctxKey{}).(*signedInUser)
	if v == nil {
		return nil
	}
	return v.mfa
}

// mfaFacts are what the policy reads about a user: the methods of their
// confirmed factors and their MFA settings.
type mfaFacts struct {
	methods  []string
	settings auth.MFASettings
	at       time.Time
}

// mfaCache keeps users' mfaFacts for a short while.
type mfaCache struct {
	mu    sync.Mutex
	ttl   time.Duration
	users map[string]mfaFacts
}

// maxMFACache bounds the cache: past it, it starts over.
const maxMFACache = 10000

func (c *mfaCache) get(userID string, now time.Time) (mfaFacts, bool) {
	if c.ttl <= 0 {
		return mfaFacts{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.users[userID]
	if !ok || now.Sub(f.at) >= c.ttl || now.Before(f.at) {
		return mfaFacts{}, false
	}
	return f, true
}

func (c *mfaCache) put(userID string, f mfaFacts) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.users) >= maxMFACache {
		c.users = map[string]mfaFacts{}
	}
	c.users[userID] = f
}

// forget drops what the cache knows of the user (after a change to their
// factors or settings).
func (c *mfaCache) forget(userID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.users, userID)
}

// facts returns u's mfaFacts, from the cache while they are fresh.
func (s *Server) facts(ctx context.Context, u *auth.User) (mfaFacts, error) {
	now := s.now()
	if f, ok := s.mfaCache.get(u.ID, now); ok {
		return f, nil
	}
	methods, err := s.mfa.Factors.Methods(ctx, u)
	if err != nil {
		return mfaFacts{}, fmt.Errorf("mfa check: %w", err)
	}
	settings, err := s.mfa.Settings.MFASettings(ctx, u.ID)
	if err != nil {
		return mfaFacts{}, fmt.Errorf("mfa check: settings: %w", err)
	}
	f := mfaFacts{methods: methods, settings: *settings, at: now}
	s.mfaCache.put(u.ID, f)
	return f, nil
}

// mfaCheck evaluates the policy for the session's user, for purpose.
func (s *Server) mfaCheck(r *http.Request, sess *auth.Session, u *auth.User, purpose auth.MFAPurpose, risk auth.MFARisk) (*mfaState, error) {
	ctx := r.Context()
	f, err := s.facts(ctx, u)
	if err != nil {
		return nil, err
	}
	methods, settings := f.methods, &f.settings
	st := &mfaState{methods: methods, settings: settings}
	if viaBearer(r) {
		// A token was issued only to a browser that passed the sign-in gate,
		// as a remembered device or with a second factor: the device's trust
		// travels with the token (a step-up still wants a fresh factor).
		st.trusted = true
	} else {
		st.trusted = s.trustedDevice(r, u)
	}
	in := auth.MFAInput{User: u, Methods: methods, Settings: settings, Session: sess, Purpose: purpose, Risk: risk,
		TrustedDevice: st.trusted, Now: s.now()}
	st.decision = auth.EvaluateMFA(s.mfa.Policy, in)
	if st.decision.Action == auth.MFAChallenge {
		// Only a challenge lists backup codes: count them only then.
		if in.BackupCodesLeft, err = s.mfa.Factors.BackupCodesLeft(ctx, u); err != nil {
			return nil, fmt.Errorf("mfa check: %w", err)
		}
		st.decision = auth.EvaluateMFA(s.mfa.Policy, in)
	}
	return st, nil
}

// trustedDevice reports whether the browser is a remembered device of u.
func (s *Server) trustedDevice(r *http.Request, u *auth.User) bool {
	if s.mfa.Devices == nil {
		return false
	}
	trust := cookieValue(r, TrustCookie)
	if trust == "" {
		return false
	}
	return s.mfa.Devices.Trusted(r.Context(), u, cookieValue(r, auth.DeviceCookie), trust, s.client(r))
}

// mfaRequiredError is the API's answer to a session that owes a second factor.
type mfaRequiredJSON struct {
	Error apiErrorBody `json:"error"`
	MFA   mfaNeedJSON  `json:"mfa"`
}

// mfaNeedJSON says what the session needs.
type mfaNeedJSON struct {
	Action          auth.MFAAction `json:"action"`
	AcceptedMethods []string       `json:"accepted_methods"`
	Deadline        *time.Time     `json:"deadline,omitempty"`
	Required        bool           `json:"required"`
	Reason          string         `json:"reason,omitempty"`
	// Location is the page that resolves it.
	Location string `json:"location,omitempty"`
}

func mfaNeedOut(d auth.MFADecision, returnTo string) mfaNeedJSON {
	n := mfaNeedJSON{Action: d.Action, AcceptedMethods: d.AcceptedMethods, Required: d.Required, Reason: d.Reason}
	if n.AcceptedMethods == nil {
		n.AcceptedMethods = []string{}
	}
	if !d.Deadline.IsZero() {
		t := d.Deadline.UTC()
		n.Deadline = &t
	}
	switch d.Action {
	case auth.MFAChallenge:
		n.Location = mfaURL("/mfa/challenge", returnTo)
	case auth.MFASetup, auth.MFASetupRequired, auth.MFAPrompt, auth.MFABlocked:
		n.Location = mfaURL("/mfa/setup", returnTo)
	}
	return n
}

// mfaURL is path with return_to, if any.
func mfaURL(path, returnTo string) string {
	if returnTo == "" {
		return path
	}
	return path + "?" + url.Values{"return_to": {returnTo}}.Encode()
}

// mfaRequired answers a request the MFA state does not let through.
func (s *Server) mfaRequired(w http.ResponseWriter, r *http.Request, d auth.MFADecision) {
	returnTo := ""
	if r.Method == http.MethodGet && !isAPI(r.URL.Path) {
		returnTo = r.URL.RequestURI()
	}
	need := mfaNeedOut(d, returnTo)
	if isAPI(r.URL.Path) || wantsJSON(r) {
		code := "mfa_required"
		if d.Action == auth.MFABlocked {
			code = "mfa_blocked"
		}
		s.logFailure(r, http.StatusForbidden, auth.Errorf(auth.CodeForbidden, "second factor required: %s", d.Action))
		writeJSON(w, http.StatusForbidden, mfaRequiredJSON{Error: apiErrorBody{Code: code, Message: d.Reason}, MFA: need})
		return
	}
	http.Redirect(w, r, need.Location, http.StatusSeeOther)
}

// afterSignIn decides where a browser goes once it has a session (the
// provider's callback, a recovery): through the MFA policy, with the risk
// signals of the sign-in.
func (s *Server) afterSignInURL(r *http.Request, sess *auth.Session, u *auth.User, risk auth.MFARisk, returnTo string) (string, *mfaState, error) {
	st, err := s.mfaCheck(r, sess, u, auth.PurposeSignIn, risk)
	if err != nil {
		return "", nil, err
	}
	switch st.decision.Action {
	case auth.MFAAllow:
		return returnTo, st, nil
	case auth.MFAPrompt:
		return mfaURL("/mfa/setup", returnTo) + sep(returnTo) + "prompt=1", st, nil
	}
	return mfaNeedOut(st.decision, returnTo).Location, st, nil
}

func sep(returnTo string) string {
	if returnTo == "" {
		return "?"
	}
	return "&"
}

// deviceToken returns the browser's device cookie, setting a new one if it has
// none.
func (s *Server) deviceToken(w http.ResponseWriter, r *http.Request) string {
	if v := cookieValue(r, auth.DeviceCookie); len(v) >= 32 {
		return v
	}
	v := auth.NewToken()
	s.setCookie(w, auth.DeviceCookie, v, s.now().Add(deviceCookieLifetime))
	r.AddCookie(&http.Cookie{Name: auth.DeviceCookie, Value: v}) // later reads in this request see it
	return v
}

// lockoutAttempt is u's verification attempt from the request, for the
// lockout: a remembered device counts on its own.
func (s *Server) lockoutAttempt(w http.ResponseWriter, r *http.Request, u *auth.User) auth.LockoutAttempt {
	a := auth.LockoutAttempt{UserID: u.ID, IP: s.clientIP(r)}
	if st := currentMFA(r); st != nil && st.trusted && s.mfa.Devices != nil {
		if dev, _, err := s.mfa.Devices.Recognise(r.Context(), u, s.deviceToken(w, r), s.client(r)); err == nil {
			a.Device = dev.ID
		}
	}
	return a
}

// guardVerify checks the lockout and the rate limits before a second factor
// of u is verified; it returns the *auth.Error (CodeRateLimited) to show if
// the attempt must wait.
func (s *Server) guardVerify(ctx context.Context, r *http.Request, u *auth.User, a auth.LockoutAttempt) error {
	if s.mfa.Lockout != nil {
		if err := s.mfa.Lockout.Check(ctx, a); err != nil {
			return err
		}
	}
	if s.mfa.Throttle != nil {
		if err := s.mfa.Throttle.Verify(ctx, u.ID, s.client(r)); err != nil {
			return err
		}
	}
	return nil
}

// verifyDone records the outcome of a second-factor verification: the lockout
// and the suspicious-activity history learn of failures (a failure that locks
// is returned, to show instead of the wrong-code message); a success clears
// the lockout.
func (s *Server) verifyDone(ctx context.Context, r *http.Request, u *auth.User, a auth.LockoutAttempt, err error) error {
	failed := err != nil && auth.ErrorCode(err) == auth.CodeUnauthorized
	if s.mfa.Lockout != nil {
		switch {
		case failed:
			if lerr := s.mfa.Lockout.Fail(ctx, a); lerr != nil {
				if auth.ErrorCode(lerr) == auth.CodeRateLimited {
					err = lerr
				} else {
					s.log.Error("record a failed second factor for the lockout", "user", u.ID, "err", lerr)
				}
			}
		case err == nil:
			if lerr := s.mfa.Lockout.Succeed(ctx, a); lerr != nil {
				s.log.Error("clear the lockout", "user", u.ID, "err", lerr)
			}
		}
	}
	if failed && s.mfa.Risk != nil {
		at := auth.SignInAttempt{User: u, Client: s.client(r), DeviceID: a.Device}
		if rerr := s.mfa.Risk.Record(ctx, at, auth.OutcomeFailure); rerr != nil {
			s.log.Error("record failed second factor", "user", u.ID, "err", rerr)
		}
	}
	return err
}

// guarded runs verify (a second factor's check) under the lockout and the
// rate limits, and records its outcome.
func (s *Server) guarded(w http.ResponseWriter, r *http.Request, u *auth.User, verify func() error) error {
	a := s.lockoutAttempt(w, r, u)
	if err := s.guardVerify(r.Context(), r, u, a); err != nil {
		return err
	}
	return s.verifyDone(r.Context(), r, u, a, verify())
}

// limitSend counts a code sent at u's request.
func (s *Server) limitSend(r *http.Request, u *auth.User) error {
	if s.mfa.Throttle == nil {
		return nil
	}
	return s.mfa.Throttle.Send(r.Context(), u.ID, s.client(r))
}

// verifyFactor checks a second factor of method for u: a TOTP code, a backup
// code, or an email or SMS code (passkeys have their own ceremony).
func (s *Server) verifyFactor(ctx context.Context, r *http.Request, u *auth.User, method, code string) error {
	c := s.client(r)
	switch method {
	case auth.MethodTOTP:
		return s.mfa.Factors.VerifyTOTP(ctx, u, code, c)
	case auth.MethodBackupCode:
		_, err := s.mfa.Factors.VerifyBackupCode(ctx, u, code, c)
		return err
	case auth.MethodEmail, auth.MethodSMS:
		if s.mfa.Codes == nil {
			return auth.Errorf(auth.CodeUnavailable, "Codes by email or text message are not available here. Use another method.")
		}
		return s.mfa.Codes.VerifyChallenge(ctx, u, method, code, c)
	case auth.MethodWebAuthn:
		return auth.Errorf(auth.CodeInvalid, "Passkeys answer with your browser, not a code: use the passkey button.")
	}
	return auth.Errorf(auth.CodeInvalid, "Choose how to verify: %s.", strings.Join(auth.SecondFactorMethods, ", "))
}

// checkSecondFactor verifies a code under the rate limits and the lockout.
func (s *Server) checkSecondFactor(w http.ResponseWriter, r *http.Request, u *auth.User, method, code string) error {
	return s.guarded(w, r, u, func() error { return s.verifyFactor(r.Context(), r, u, method, code) })
}

// elevate records the verified second factor in the session (a new session id:
// the cookie is replaced), remembers the device when asked, and records the
// completed sign-in for the suspicious-activity checks. It returns the new
// session.
func (s *Server) elevate(w http.ResponseWriter, r *http.Request, sess *auth.Session, u *auth.User, method string, remember bool) (*auth.Session, error) {
	ctx := r.Context()
	c := s.client(r)
	s.mfaCache.forget(u.ID) // a factor was just added, or used: read afresh
	token, next, err := s.svc.ElevateSession(ctx, sess, u, method, c)
	if err != nil {
		return nil, err
	}
	s.setSession(w, token, next)
	if v, _ := r.Context().Value(ctxKey{}).(*signedInUser); v != nil {
		v.sess = next
	}
	var deviceID string
	if s.mfa.Devices != nil {
		dev, _, err := s.mfa.Devices.Recognise(ctx, u, s.deviceToken(w, r), c)
		if err != nil {
			s.log.Error("recognise device", "user", u.ID, "err", err)
		} else {
			deviceID = dev.ID
			if remember {
				trust, until, err := s.mfa.Devices.Remember(ctx, u, dev.ID, 0, c)
				if err != nil {
					return next, err
				}
				s.setCookie(w, TrustCookie, trust, until)
			}
		}
	}
	if s.mfa.Risk != nil {
		if err := s.mfa.Risk.Record(ctx, auth.SignInAttempt{User: u, Client: c, DeviceID: deviceID, KnownDevice: true}, auth.OutcomeSuccess); err != nil {
			s.log.Error("record sign-in", "user", u.ID, "err", err)
		}
	}
	s.log.Info("second factor verified", "user", u.ID, "method", method, "remember", remember, "ip", c.IP)
	return next, nil
}

// pageSealer seals what a page hands to the browser and gets back (a TOTP
// setup in progress), under a key derived from the form-token key.
func (s *Server) pageSealer() *auth.Sealer {
	m := hmac.New(sha256.New, s.csrfKey)
	m.Write([]byte("hestami authhttp page sealing v1"))
	sealer, err := auth.NewSealer(map[string][]byte{"page": m.Sum(nil)}, "page")
	if err != nil {
		panic(fmt.Sprintf("page sealer: %v", err)) // a 32-byte key always works
	}
	return sealer
}

// seal seals v (as JSON) for purpose and userID, valid for ttl.
func (s *Server) seal(purpose, userID string, v any, ttl time.Duration) (string, error) {
	body, err := json.Marshal(struct {
		Exp int64 `json:"exp"`
		V   any   `json:"v"`
	}{s.now().Add(ttl).Unix(), v})
	if err != nil {
		return "", err
	}
	b, err := s.sealer.Seal(body, []byte(purpose+"\x00"+userID))
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

var errSealed = auth.Errorf(auth.CodeInvalid, "This page has expired or was not made for your account. Start again.")

// unseal opens what seal made into v; errSealed if it is not valid.
func (s *Server) unseal(purpose, userID, sealed string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil || len(sealed) > 4096 {
		return errSealed
	}
	body, _, err := s.sealer.Open(b, []byte(purpose+"\x00"+userID))
	if err != nil {
		return errSealed
	}
	var env struct {
		Exp int64           `json:"exp"`
		V   json.RawMessage `json:"v"`
	}
	if err := json.Unmarshal(body, &env); err != nil || s.now().Unix() > env.Exp {
		return errSealed
	}
	if err := json.Unmarshal(env.V, v); err != nil {
		return errSealed
	}
	return nil
}

var errMFAOff = auth.Errorf(auth.CodeNotFound, "Two-step verification is not turned on for this service.")

// mfaOn answers 404 and returns false when MFA is off.
func (s *Server) mfaOn(w http.ResponseWriter, r *http.Request) bool {
	if s.mfa == nil {
		s.fail(w, r, errMFAOff)
		return false
	}
	return true
}

// limitSignIn counts a sign-in from the request's address (userID empty) or
// of a known account.
func (s *Server) limitSignIn(r *http.Request, userID string) error {
	if s.mfa == nil || s.mfa.Throttle == nil {
		return nil
	}
	return s.mfa.Throttle.SignIn(r.Context(), userID, s.client(r))
}

// notifyNewDevice emails u about a sign-in from a new device; a failure is
// logged (the sign-in goes on).
func (s *Server) notifyNewDevice(ctx context.Context, u *auth.User, dev *auth.Device) {
	if err := s.mfa.Devices.NotifyNewDevice(ctx, u, dev); err != nil {
		s.log.Error("email about a new device", "user", u.ID, "err", err)
	}
}

// notifyRisk emails u about a suspicious sign-in: the new-device notice when
// that is the only signal, else a notice of its own naming the signals.
func (s *Server) notifyRisk(ctx context.Context, u *auth.User, dev *auth.Device, risk *auth.RiskAssessment, c auth.Client) {
	if len(risk.Signals) == 1 && risk.Has(auth.SignalNewDevice) {
		if dev != nil && s.mfa.Devices != nil {
			s.notifyNewDevice(ctx, u, dev)
		}
		return
	}
	if s.mfa.Mailer == nil || u.Email == "" {
		return
	}
	where := risk.Location.String()
	if where == "" {
		where = "unknown"
	}
	device := "unknown"
	if dev != nil {
		device = dev.Name
	}
	text := fmt.Sprintf(`Hello%s,

Someone just signed in to your Hestami account in a way that looks unusual:
%s
  Device:     %s
  IP address: %s
  Location:   %s
  Time:       %s

We ask for your second factor to finish such a sign-in.

If this was you, there is nothing to do.

If it was not you, someone can sign in to your account at your sign-in
provider (Google, Microsoft, LinkedIn or GitHub):
  1. Change that account's password and turn on its two-step verification.
  2. Go to %s/account/security, revoke the devices you do not know, and
     sign out every other session from %s/account.
  3. Tell support by replying to this email.
`, nameSuffix(u.Name), bullets(risk.Reasons), device, c.IP, where, s.now().UTC().Format("Mon 2 Jan 2006 15:04 MST"), s.publicOrigin(), s.publicOrigin())
	ev := &auth.AuditEvent{Action: "signin.risk.notify", ActorID: u.ID, IP: c.IP, UserAgent: c.UserAgent, Detail: strings.Join(risk.Signals, ",")}
	if err := s.mfa.Mailer.SendMail(ctx, auth.Mail{To: u.Email, Subject: "Unusual sign-in to your Hestami account", Text: text}); err != nil {
		s.log.Error("email about a suspicious sign-in", "user", u.ID, "err", err)
		ev.Outcome, ev.Detail = auth.OutcomeFailure, "mail not sent: "+ev.Detail
	}
	if err := s.svc.Audit(ctx, ev); err != nil {
		s.log.Error("audit suspicious sign-in notice", "err", err)
	}
}

func nameSuffix(name string) string {
	if name == "" {
		return ""
	}
	return " " + name
}

func bullets(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("  - " + l + "\n")
	}
	return b.String()
}

// publicOrigin is the service's origin, for links in emails.
func (s *Server) publicOrigin() string { return s.public.Scheme + "://" + s.public.Host }

// scriptHandler serves a script asset.
func scriptHandler(js []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		_, _ = w.Write(js)
	})
}
