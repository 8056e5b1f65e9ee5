package oidcprovider_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// oauth4webapiVersion is the version of the library Auth.js v5 uses underneath,
// installed into the user's cache for TestAuthJSClient.
const oauth4webapiVersion = "3.8.8"

var (
	oauth4webapiOnce sync.Once
	oauth4webapiDir  string
	oauth4webapiErr  error
)

// oauth4webapi returns the directory oauth4webapi is installed in, installing it
// with npm the first time.
func oauth4webapi(t *testing.T) string {
	t.Helper()
	oauth4webapiOnce.Do(func() {
		cache, err := os.UserCacheDir()
		if err != nil {
			oauth4webapiErr = err
			return
		}
		dir := filepath.Join(cache, "hestami", "oauth4webapi")
		var pkg struct{ Version string }
		if b, err := os.ReadFile(filepath.Join(dir, "node_modules", "oauth4webapi", "package.json")); err == nil &&
			json.Unmarshal(b, &pkg) == nil && pkg.Version == oauth4webapiVersion {
			oauth4webapiDir = dir
			return
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			oauth4webapiErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "npm", "install", "--prefix", dir, "--no-audit", "--no-fund", "--loglevel=error",
			"--save-exact", "oauth4webapi@"+oauth4webapiVersion).CombinedOutput()
		if err != nil {
			oauth4webapiErr = fmt.Errorf("npm install oauth4webapi@%s into %s: %v\n%s", oauth4webapiVersion, dir, err, out)
			return
		}
		oauth4webapiDir = dir
	})
	if oauth4webapiErr != nil {
		t.Fatalf("%v\nNode.js and npm come with `make test` (scripts/install-deps.sh); npm needs its registry to install oauth4webapi once", oauth4webapiErr)
	}
	return oauth4webapiDir
}

// TestAuthJSClient signs in with oauth4webapi, the OAuth library inside Auth.js
// v5, run by Node.js exactly as Auth.js calls it: what passes here is what the
// frontend's sign-in does.
func TestAuthJSClient(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node not found: `make test` installs Node.js (scripts/install-deps.sh)")
	}
	lib := oauth4webapi(t)
	e := newEnv(t)
	e.methods = []string{"microsoft"}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("testdata", "authjs.mjs"))
	cmd.Env = append(os.Environ(), "OAUTH4WEBAPI="+lib, "ISSUER="+e.issuer, "CLIENT_ID="+frontendID,
		"CLIENT_SECRET="+frontendSecret, "REDIRECT_URI="+frontendRedirect)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	lines.Buffer(nil, 1<<20)
	next := func() string {
		if !lines.Scan() {
			_ = cmd.Wait()
			t.Fatalf("the Auth.js client stopped: %v\n%s", lines.Err(), stderr.String())
		}
		return lines.Text()
	}

	var start struct{ Authorize string }
	if err := json.Unmarshal([]byte(next()), &start); err != nil || start.Authorize == "" {
		t.Fatalf("first line: %v (%q)", err, start.Authorize)
	}
	_, body, loc := visit(t, e.browser(), start.Authorize)
	if loc == nil || !strings.HasPrefix(loc.String(), frontendRedirect+"?") {
		t.Fatalf("authorize: want a redirect to the frontend, got %v: %s", loc, body)
	}
	if _, err := fmt.Fprintln(stdin, loc.String()); err != nil {
		t.Fatal(err)
	}

	var res struct {
		Claims       idClaims `json:"claims"`
		Userinfo     idClaims `json:"userinfo"`
		Rotated      bool     `json:"rotated"`
		RefreshedSub string   `json:"refreshedSub"`
		AccessToken  string   `json:"accessToken"`
	}
	line := next()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the Auth.js client failed: %v\n%s", err, stderr.String())
	}
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		t.Fatalf("result %s: %v", line, err)
	}
	c := res.Claims
	if c.Sub != e.user.ID || c.Email != "olivia@example.com" || c.UserType != "owner" || !slices.Equal(c.Roles, []string{"owner"}) ||
		!slices.Equal(c.AMR, []string{"microsoft"}) || c.ACR != "urn:hestami:acr:sfa" || c.AuthTime == 0 {
		t.Fatalf("ID token claims as Auth.js sees them: %s", line)
	}
	if res.Userinfo.Sub != e.user.ID || res.Userinfo.Name != "Olivia Owner" || !slices.Equal(res.Userinfo.Roles, []string{"owner"}) {
		t.Fatalf("userinfo as Auth.js sees it: %s", line)
	}
	if !res.Rotated || res.RefreshedSub != e.user.ID {
		t.Fatalf("refresh as Auth.js sees it: %s", line)
	}
	if at, err := e.p.VerifyAccessToken(t.Context(), res.AccessToken); err != nil || at.UserID != e.user.ID {
		t.Fatalf("the refreshed access token: %+v, %v", at, err)
	}
}
