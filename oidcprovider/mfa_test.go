package oidcprovider_test

import (
	"slices"
	"testing"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/oidcprovider"
)

// TestElevatedSessionSaysMFA: after a second factor is verified in the session
// (auth.Service.ElevateSession, as the MFA pages do), the ID token says so:
// acr is ACRMFA, amr lists the sign-in and the factor, and auth_time is still
// the sign-in's. Without one, acr is ACRSingle.
func TestElevatedSessionSaysMFA(t *testing.T) {
	t.Parallel()
	for _, method := range append([]string{""}, auth.SecondFactorMethods...) {
		name := method
		if name == "" {
			name = "no second factor"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.elevate = method
			c := e.rp(frontendID, frontendSecret, frontendRedirect)
			tok, id := c.signIn(e.browser())
			var cl idClaims
			if err := id.Claims(&cl); err != nil {
				t.Fatal(err)
			}
			sess := e.lastSess.Load()
			wantACR, wantAMR := oidcprovider.ACRSingle, []string{"google"}
			if method != "" {
				wantACR, wantAMR = oidcprovider.ACRMFA, []string{"google", method}
				if sess.MFAAt.IsZero() {
					t.Fatal("the elevated session has no MFAAt")
				}
			}
			if cl.ACR != wantACR || !slices.Equal(cl.AMR, wantAMR) || cl.AuthTime != sess.AuthTime.Unix() {
				t.Fatalf("ID token acr %q amr %v auth_time %d, want %q %v %d", cl.ACR, cl.AMR, cl.AuthTime, wantACR, wantAMR, sess.AuthTime.Unix())
			}
			// A refresh keeps them.
			next, err := c.refresh(tok.RefreshToken)
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			var cl2 idClaims
			if err := c.verifyID(next).Claims(&cl2); err != nil {
				t.Fatal(err)
			}
			if cl2.ACR != wantACR || !slices.Equal(cl2.AMR, wantAMR) {
				t.Fatalf("refreshed ID token acr %q amr %v, want %q %v", cl2.ACR, cl2.AMR, wantACR, wantAMR)
			}
		})
	}
}
