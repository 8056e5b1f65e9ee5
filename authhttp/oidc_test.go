package authhttp_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/oidcprovider"
)

// TestFrontendSignsInThroughOIDC runs what Auth.js does for the Next.js
// frontend against the whole service: discovery, authorization code with PKCE,
// state and nonce, the person signing up on our pages in between, the code
// exchange and the ID token's verification.
func TestFrontendSignsInThroughOIDC(t *testing.T) {
	t.Parallel()
	const redirect = "http://localhost:3000/api/auth/callback/hestami"
	e := newEnv(t, envOptions{oidcClients: []oidcprovider.Client{
		{ID: "frontend", Name: "Hestami", Secret: "frontend-secret-0123456789-abcdefghijklmnop", RedirectURIs: []string{redirect}},
	}})
	ctx := t.Context()
	provider, err := oidc.NewProvider(ctx, e.base+"/oidc")
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	conf := oauth2.Config{ClientID: "frontend", ClientSecret: "frontend-secret-0123456789-abcdefghijklmnop",
		Endpoint: provider.Endpoint(), RedirectURL: redirect, Scopes: []string{oidc.ScopeOpenID, "email", "profile"}}
	state, nonce, verifier := auth.NewToken(), auth.NewToken(), oauth2.GenerateVerifier()

	b := e.browser()
	b.stopAt = "http://localhost:3000/"
	p := b.get(conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)))
	if p.Request.URL.Path != "/signin" || !strings.HasPrefix(p.Request.URL.Query().Get("return_to"), "/oidc-login?id=") {
		t.Fatalf("authorize ended at %s (%d), want the sign-in page returning to /oidc-login", p.Request.URL, p.StatusCode)
	}
	p = b.get(linkHref(t, p.body, "I'm a property owner"))
	e.idp.setNext("alpha", profile("alpha", randomID(), "frontend.user@example.com"))
	p = b.submit(p, "/signin/alpha", nil)
	back, err := url.Parse(p.Header.Get("Location"))
	if err != nil || p.StatusCode != http.StatusFound && p.StatusCode != http.StatusSeeOther || !strings.HasPrefix(back.String(), redirect+"?") {
		t.Fatalf("after sign-in the browser went to %q (%d at %s), want the frontend's callback", p.Header.Get("Location"), p.StatusCode, p.Request.URL)
	}
	if back.Query().Get("state") != state || back.Query().Get("code") == "" {
		t.Fatalf("frontend callback %s: want the state and a code", back)
	}

	tok, err := conf.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: "frontend"}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	if idt.Nonce != nonce {
		t.Errorf("nonce %q, want %q", idt.Nonce, nonce)
	}
	if me := b.mustMe(); idt.Subject != me {
		t.Errorf("ID token sub %s, want the signed-in user %s", idt.Subject, me)
	}
	var claims struct {
		Email string `json:"email"`
	}
	if err := idt.Claims(&claims); err != nil || claims.Email != "frontend.user@example.com" {
		t.Errorf("email claim %q (%v)", claims.Email, err)
	}
}
