package devidp

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// accessToken is an issued access token, good for userinfo.
type accessToken struct {
	subject string
	scope   string
	expires time.Time
}

// idClaims are the claims of an ID token.
type idClaims struct {
	jwt.Claims
	AuthTime      int64  `json:"auth_time"`
	Nonce         string `json:"nonce,omitempty"`
	Email         string `json:"email"`
	EmailVerified bool   `json:"email_verified"`
	Name          string `json:"name,omitempty"`
}

// userClaims are what userinfo returns.
type userClaims struct {
	Subject       string `json:"sub"`
	Email         string `json:"email"`
	EmailVerified bool   `json:"email_verified"`
	Name          string `json:"name,omitempty"`
}

// oauthError is an OAuth 2.0 error response (RFC 6749 section 5.2).
type oauthError struct {
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// token serves the token endpoint: it authenticates the client, redeems an
// authorization code once (checking its client, redirect URI, expiry and PKCE
// verifier) and returns an ID token and an access token.
func (p *IdP) token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		p.tokenError(w, http.StatusBadRequest, "invalid_request", "the request body must be an application/x-www-form-urlencoded form")
		return
	}
	f := r.PostForm
	clientID, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 section 2.3.1: both are form-encoded before Basic encoding.
		var err1, err2 error
		clientID, err1 = url.QueryUnescape(clientID)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil || f.Has("client_secret") || f.Has("client_id") && f.Get("client_id") != clientID {
			p.tokenError(w, http.StatusBadRequest, "invalid_request", "use one client authentication method: HTTP Basic or client_id and client_secret in the body")
			return
		}
	} else {
		clientID, secret = f.Get("client_id"), f.Get("client_secret")
	}
	idOK := subtle.ConstantTimeCompare([]byte(clientID), []byte(p.clientID))
	secretOK := subtle.ConstantTimeCompare([]byte(secret), []byte(p.clientSecret))
	if idOK&secretOK != 1 {
		p.log.Warn("development identity provider: client authentication failed", "client_id", clientID)
		if basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="hestami development identity provider"`)
		}
		p.tokenError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed: wrong client id or secret")
		return
	}
	if gt := f.Get("grant_type"); gt != "authorization_code" {
		p.tokenError(w, http.StatusBadRequest, "unsupported_grant_type", "only grant_type=authorization_code is supported")
		return
	}

	now, at := p.now(), rand.Text()
	p.mu.Lock()
	p.sweepLocked(now)
	g := p.codes[f.Get("code")]
	problem := p.redeemLocked(g, f, now, at)
	p.mu.Unlock()
	if problem != "" {
		p.log.Warn("development identity provider: code refused", "detail", problem)
		p.tokenError(w, http.StatusBadRequest, "invalid_grant", problem)
		return
	}
	u, _ := p.user(g.subject) // users never change
	exp := now.Add(tokenTTL)
	idToken, err := jwt.Signed(p.signer).Claims(idClaims{
		Claims: jwt.Claims{
			Issuer: p.issuer, Subject: u.Subject, Audience: jwt.Audience{p.clientID},
			IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(exp),
		},
		AuthTime: g.authTime.Unix(), Nonce: g.nonce,
		Email: u.Email, EmailVerified: true, Name: u.Name,
	}).Serialize()
	if err != nil {
		p.mu.Lock()
		delete(p.tokens, at)
		p.mu.Unlock()
		p.log.Error("development identity provider: sign ID token", "err", err)
		p.tokenError(w, http.StatusInternalServerError, "server_error", "could not sign the ID token")
		return
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": at,
		"token_type":   "Bearer",
		"expires_in":   int(tokenTTL / time.Second),
		"id_token":     idToken,
		"scope":        g.scope,
	})
}

// redeemLocked uses up the code of g and, if the token request f is right for
// it, records the access token at; otherwise it says what is wrong. Any
// redemption uses the code up, so a stolen code tried with a wrong verifier is
// no good afterwards either, and a replayed code revokes what it issued.
// p.mu must be held.
func (p *IdP) redeemLocked(g *grant, f url.Values, now time.Time, at string) string {
	if g == nil {
		return "unknown authorization code"
	}
	if g.used {
		delete(p.tokens, g.accessToken)
		return "authorization code used already; the tokens issued for it are revoked"
	}
	g.used = true
	switch {
	case !now.Before(g.expires):
		return "authorization code expired"
	case f.Get("redirect_uri") != g.redirectURI:
		return "redirect_uri differs from the authorization request's"
	case !validVerifier(f.Get("code_verifier")):
		return "code_verifier missing or malformed"
	case subtle.ConstantTimeCompare([]byte(s256(f.Get("code_verifier"))), []byte(g.challenge)) != 1:
		return "PKCE verification failed: code_verifier does not match code_challenge"
	}
	g.accessToken = at
	p.tokens[at] = &accessToken{subject: g.subject, scope: g.scope, expires: now.Add(tokenTTL)}
	return ""
}

// userinfo serves the user of a bearer access token (RFC 6750 header form).
func (p *IdP) userinfo(w http.ResponseWriter, r *http.Request) {
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="hestami development identity provider"`)
		p.tokenError(w, http.StatusUnauthorized, "invalid_request", "send the access token as Authorization: Bearer TOKEN")
		return
	}
	now := p.now()
	p.mu.Lock()
	p.sweepLocked(now)
	a := p.tokens[tok]
	p.mu.Unlock()
	u, ok := User{}, false
	if a != nil {
		u, ok = p.user(a.subject)
	}
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="unknown, expired or revoked access token"`)
		p.tokenError(w, http.StatusUnauthorized, "invalid_token", "unknown, expired or revoked access token")
		return
	}
	writeJSON(w, http.StatusOK, userClaims{Subject: u.Subject, Email: u.Email, EmailVerified: true, Name: u.Name})
}

func (p *IdP) tokenError(w http.ResponseWriter, status int, code, description string) {
	writeJSON(w, status, oauthError{Code: code, Description: description})
}

// s256 is the PKCE S256 code challenge of verifier.
func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
