package oauth_test

import (
	"context"
	"testing"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/oauth"
	"github.com/hestami/hestami/oauthtest"
)

func TestMicrosoftAuthCodeURL(t *testing.T) {
	t.Parallel()
	fake := oauthtest.NewOIDC(t, oauthtest.Options{Flavor: oauthtest.Microsoft})
	for _, tenant := range []string{"common", "organizations", oauthtest.TenantID} {
		t.Run(tenant, func(t *testing.T) {
			p, err := oauth.NewMicrosoft(fake.MicrosoftConfig(callbackURL, tenant))
			if err != nil {
				t.Fatal(err)
			}
			r := newRequest()
			u, q := query(t, p.AuthCodeURL(r))
			if got, want := u.Scheme+"://"+u.Host+u.Path, fake.URL()+"/"+tenant+"/oauth2/v2.0/authorize"; got != want {
				t.Errorf("endpoint = %s, want %s", got, want)
			}
			want := map[string]string{
				"response_type": "code", "client_id": fake.ClientID(), "redirect_uri": callbackURL, "scope": "openid profile email",
				"state": r.State, "nonce": r.Nonce, "code_challenge": challenge(r.Verifier), "code_challenge_method": "S256",
			}
			for k, v := range want {
				if got := q.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

// TestMicrosoftProfile: the subject is tid:oid, never the email; the email is
// verified only with xms_edov.
func TestMicrosoftProfile(t *testing.T) {
	t.Parallel()
	fake := oauthtest.NewOIDC(t, oauthtest.Options{Flavor: oauthtest.Microsoft})
	p := fake.Provider(t, callbackURL)
	u := fake.User()
	prof := mustSignIn(t, p, newRequest())
	if want := u.TenantID + ":" + u.ObjectID; prof.Subject != want {
		t.Errorf("subject = %q, want tid:oid %q", prof.Subject, want)
	}
	if prof.Tenant != u.TenantID || prof.Email != u.Email || prof.Name != u.Name || prof.Provider != "microsoft" {
		t.Errorf("profile = %+v, want tenant %s, email %s, name %s", prof, u.TenantID, u.Email, u.Name)
	}
	if prof.EmailVerified {
		t.Error("email verified without xms_edov")
	}

	// The tenant's administrator renames the account's email (or sets it to
	// someone else's): same person, same subject, and still not verified.
	u.Email = "boss@victim.example"
	fake.SetUser(u)
	again := mustSignIn(t, p, newRequest())
	if again.Subject != prof.Subject || again.Email != "boss@victim.example" || again.EmailVerified {
		t.Errorf("after the email changed: subject %q email %q verified %v; want subject %q, the new email, unverified",
			again.Subject, again.Email, again.EmailVerified, prof.Subject)
	}

	u.EDOV = true
	fake.SetUser(u)
	if prof := mustSignIn(t, p, newRequest()); !prof.EmailVerified {
		t.Error("email not verified with xms_edov=true")
	}

	// Another account in another tenant with the same object id is another person.
	u.TenantID = oauthtest.OtherTenantID
	fake.SetUser(u)
	if other := mustSignIn(t, p, newRequest()); other.Subject == prof.Subject {
		t.Errorf("accounts of two tenants share subject %q", other.Subject)
	}
}

// TestMicrosoftTenants: who may sign in in each tenant mode, and that the issuer
// must be the token's own tenant's.
func TestMicrosoftTenants(t *testing.T) {
	t.Parallel()
	const domain = "contoso.example"
	cases := []struct {
		name    string
		tenant  string
		allowed []string
		user    string // the signing-in account's tid
		fault   oauthtest.Fault
		want    auth.Code // "" signs in
	}{
		{"common, any tenant", "common", nil, oauthtest.OtherTenantID, 0, ""},
		{"common, allowed tenant", "common", []string{oauthtest.TenantID}, oauthtest.TenantID, 0, ""},
		{"common, tenant not allowed", "common", []string{oauthtest.TenantID}, oauthtest.OtherTenantID, 0, auth.CodeForbidden},
		{"organizations, tenant not allowed", "organizations", []string{oauthtest.TenantID}, oauthtest.OtherTenantID, 0, auth.CodeForbidden},
		{"organizations, allow-list in capitals", "organizations", []string{"4A5B6C7D-1111-4222-8333-944455556666"}, oauthtest.TenantID, 0, ""},
		{"single tenant by id", oauthtest.TenantID, nil, oauthtest.TenantID, 0, ""},
		{"single tenant by id, account of another", oauthtest.TenantID, nil, oauthtest.OtherTenantID, 0, auth.CodeUnauthorized},
		{"single tenant by domain", domain, nil, oauthtest.TenantID, 0, ""},
		{"single tenant by domain, account of another", domain, nil, oauthtest.OtherTenantID, 0, auth.CodeUnauthorized},
		{"common, issuer of another tenant than tid", "common", nil, oauthtest.TenantID, oauthtest.FaultWrongTenant, auth.CodeUnauthorized},
		{"single tenant, issuer of another tenant than tid", oauthtest.TenantID, nil, oauthtest.TenantID, oauthtest.FaultWrongTenant, auth.CodeUnauthorized},
		{"common, v1 issuer", "common", nil, oauthtest.TenantID, oauthtest.FaultWrongIssuer, auth.CodeUnauthorized},
		{"common, no tid", "common", nil, "", 0, auth.CodeUnauthorized},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := oauthtest.DefaultUser(oauthtest.Microsoft)
			u.TenantID = tc.user
			fake := oauthtest.NewOIDC(t, oauthtest.Options{
				Flavor: oauthtest.Microsoft, User: u, Fault: tc.fault,
				TenantDomains: map[string]string{domain: oauthtest.TenantID},
			})
			cfg := fake.MicrosoftConfig(callbackURL, tc.tenant)
			cfg.AllowedTenants = tc.allowed
			p, err := oauth.NewMicrosoft(cfg)
			if err != nil {
				t.Fatal(err)
			}
			prof, err := signIn(t, p, newRequest())
			if tc.want == "" {
				if err != nil {
					t.Fatalf("sign-in refused: %v", err)
				}
				if prof.Tenant != tc.user {
					t.Errorf("tenant = %q, want %q", prof.Tenant, tc.user)
				}
				return
			}
			wantError(t, p, err, tc.want)
		})
	}
}

// TestMicrosoftUnknownDomain: a tenant domain that cannot be looked up fails the
// sign-in as unavailable, at the start (back to our callback with an error) and
// at the exchange.
func TestMicrosoftUnknownDomain(t *testing.T) {
	t.Parallel()
	fake := oauthtest.NewOIDC(t, oauthtest.Options{Flavor: oauthtest.Microsoft})
	p, err := oauth.NewMicrosoft(fake.MicrosoftConfig(callbackURL, "unknown.example"))
	if err != nil {
		t.Fatal(err)
	}
	r := newRequest()
	u, q := query(t, p.AuthCodeURL(r))
	if got := u.Scheme + "://" + u.Host + u.Path; got != callbackURL || q.Get("error") != "temporarily_unavailable" || q.Get("state") != r.State {
		t.Errorf("AuthCodeURL = %s, want our callback with error=temporarily_unavailable and the state", u)
	}
	_, err = p.Exchange(context.Background(), "some-code", r)
	wantError(t, p, err, auth.CodeUnavailable)
}

func TestMicrosoftMissingEmail(t *testing.T) {
	t.Parallel()
	u := oauthtest.DefaultUser(oauthtest.Microsoft)
	u.Email = ""
	fake := oauthtest.NewOIDC(t, oauthtest.Options{Flavor: oauthtest.Microsoft, User: u})
	p := fake.Provider(t, callbackURL)
	_, err := signIn(t, p, newRequest())
	wantError(t, p, err, auth.CodeInvalid)
}

func TestNewMicrosoftRefusesBadConfig(t *testing.T) {
	t.Parallel()
	good := oauth.MicrosoftConfig{ClientID: "c", ClientSecret: "s", RedirectURL: callbackURL}
	cases := []struct {
		name string
		edit func(*oauth.MicrosoftConfig)
	}{
		{"tenant neither id nor domain", func(c *oauth.MicrosoftConfig) { c.Tenant = "my tenant" }},
		{"allowed tenant not an id", func(c *oauth.MicrosoftConfig) { c.AllowedTenants = []string{"contoso.com"} }},
		{"single tenant outside the allow-list", func(c *oauth.MicrosoftConfig) {
			c.Tenant, c.AllowedTenants = oauthtest.TenantID, []string{oauthtest.OtherTenantID}
		}},
		{"no client id", func(c *oauth.MicrosoftConfig) { c.ClientID = "" }},
		{"relative redirect", func(c *oauth.MicrosoftConfig) { c.RedirectURL = "/auth/callback" }},
		{"authority not a URL", func(c *oauth.MicrosoftConfig) { c.Authority = "login.microsoftonline.com" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.edit(&cfg)
			if _, err := oauth.NewMicrosoft(cfg); err == nil {
				t.Error("accepted")
			}
		})
	}
	if _, err := oauth.NewMicrosoft(good); err != nil {
		t.Errorf("good config refused: %v", err)
	}
}
