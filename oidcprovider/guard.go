package oidcprovider

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"

	"github.com/hestami/hestami/auth"
)

// bindingCookie holds a random value whose hash every authorization request from
// this browser records; the callback that hands out the code checks it.
const bindingCookie = "hestami_oidc_binding"

type bindingKey struct{}

// guard wraps op's handler (paths relative to the issuer). It binds each
// authorization request to the browser that started it, and lets only that
// browser, after it signed in, take the code: the callback needs both the
// binding cookie (set at /authorize) and the one-time secret Complete put in the
// callback URL. So a sign-in link sent to someone else (login CSRF, or an
// attacker's request signed in by a victim) gives nobody a code.
func (p *Provider) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Referrer-Policy", "no-referrer")
		switch r.URL.Path {
		case "/authorize":
			value := ""
			if c, err := r.Cookie(bindingCookie); err == nil && len(c.Value) >= 43 {
				value = c.Value // sign-ins in two tabs share it
			} else {
				value = auth.NewToken()
			}
			http.SetCookie(w, &http.Cookie{Name: bindingCookie, Value: value, Path: p.path + "/", HttpOnly: true,
				Secure: p.secure, SameSite: http.SameSiteLaxMode, MaxAge: int(p.cfg.LoginTimeout.Seconds()) + 60})
			r = r.WithContext(context.WithValue(r.Context(), bindingKey{}, auth.HashToken(value)))
		case "/authorize/callback":
			w.Header().Set("Cache-Control", "no-store")
			if status, msg := p.checkCallback(r); status != 0 {
				http.Error(w, msg, status)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (p *Provider) checkCallback(r *http.Request) (int, string) {
	q := r.URL.Query()
	req, err := p.store.AuthRequest(r.Context(), q.Get("id"))
	if errors.Is(err, auth.ErrNotFound) || err == nil && !p.now().Before(req.ExpiresAt) {
		return http.StatusBadRequest, errRequestGone.Message
	}
	if err != nil {
		p.log.Error("oidc: load sign-in request", "err", err)
		return http.StatusInternalServerError, "Something went wrong on our side. Go back to the application and sign in again."
	}
	c, cerr := r.Cookie(bindingCookie)
	switch {
	case req.CompletedAt.IsZero():
		return http.StatusBadRequest, "This sign-in is not finished. Go back to the application and sign in again."
	case cerr != nil || !equalHash(auth.HashToken(c.Value), req.Binding):
		p.log.Warn("oidc: callback from a browser that did not start the sign-in", "client", req.ClientID)
		return http.StatusForbidden, "This sign-in was started in another browser (or its cookie was lost). Start it again from the application, in this browser."
	case !equalHash(auth.HashToken(q.Get("k")), req.Completion):
		p.log.Warn("oidc: callback without the sign-in's secret", "client", req.ClientID)
		return http.StatusForbidden, "This sign-in link is not valid. Start the sign-in again from the application."
	}
	return 0, ""
}

func equalHash(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
