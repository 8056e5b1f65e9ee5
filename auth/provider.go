package auth

import "context"

// Provider is an external identity provider that people sign in with (package oauth
// has Google, Microsoft, LinkedIn and GitHub; package devidp the development one).
type Provider interface {
	// Name is the provider's key in URLs, identities and the audit log: "google".
	Name() string
	// DisplayName is the provider for people: "Google".
	DisplayName() string
	// AuthCodeURL returns where to send the browser: the provider's authorization
	// endpoint with the client id, redirect URI, scopes, r.State, r.Nonce (OIDC)
	// and the PKCE S256 challenge of r.Verifier.
	AuthCodeURL(r AuthCodeRequest) string
	// Exchange redeems code with r.Verifier, checks what the provider sent (the ID
	// token's signature, issuer, audience, expiry and nonce r.Nonce) and returns
	// the person's profile. Errors are *Error: CodeUnauthorized when the answer
	// cannot be trusted, CodeUnavailable when the provider cannot be reached,
	// CodeInvalid or CodeForbidden when it lacks something we need (an email, an
	// organization membership), each with a message for the person.
	Exchange(ctx context.Context, code string, r AuthCodeRequest) (*Profile, error)
}

// AuthCodeRequest is one authorization request to a provider.
type AuthCodeRequest struct {
	State    string
	Nonce    string
	Verifier string
	// Scopes are requested on top of the provider's sign-in scopes (incremental
	// authorization: Google Calendar when a feature asks for it).
	Scopes []string
	// LoginHint pre-fills the account to sign in with, when linking.
	LoginHint string
}
