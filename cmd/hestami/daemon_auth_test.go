package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/hestami/hestami/config"
)

// TestDaemonAuthConnectTo: with daemon.auth.connect_to, the daemon's calls to the
// auth service's URL reach the given address with the URL's host name kept (as in
// compose development: http://localhost:8080 for browsers, auth:8080 for the
// container); without it, the URL's own address.
func TestDaemonAuthConnectTo(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "host="+r.Host)
	}))
	defer srv.Close()
	// A loopback port nothing listens on: the URL browsers would use.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unused := l.Addr().(*net.TCPAddr).Port
	l.Close()
	url := "http://localhost:" + strconv.Itoa(unused)

	hc, err := authHTTPClient(config.DaemonAuth{URL: url, ConnectTo: strings.TrimPrefix(srv.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(url + "/oidc/.well-known/openid-configuration")
	if err != nil {
		t.Fatalf("through connect_to: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got, want := string(body), "host=localhost:"+strconv.Itoa(unused); got != want {
		t.Errorf("through connect_to the server saw %q, want %q (the URL's host kept)", got, want)
	}
	// Other addresses are dialled as they are.
	if resp, err := hc.Get(srv.URL); err != nil {
		t.Errorf("another address: %v", err)
	} else {
		resp.Body.Close()
	}

	plain, err := authHTTPClient(config.DaemonAuth{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := plain.Get(url + "/oidc/.well-known/openid-configuration"); err == nil {
		resp.Body.Close()
		t.Errorf("without connect_to, %s answered: want the URL's own address (nothing listens there)", url)
	}
}
