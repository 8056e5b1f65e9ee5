package auth

import "testing"

func TestSafeReturnTo(t *testing.T) {
	origins := []string{"https://app.hestami.example", "http://localhost:3000/"}
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "/account"},
		{"path", "/account/sessions?x=1", "/account/sessions?x=1"},
		{"allowed origin", "https://app.hestami.example/dashboard", "https://app.hestami.example/dashboard"},
		{"allowed origin trailing slash config", "http://localhost:3000/x", "http://localhost:3000/x"},
		{"origin case", "https://APP.hestami.example/", "https://APP.hestami.example/"},
		{"other origin", "https://evil.example/", "/account"},
		{"suffix trick", "https://app.hestami.example.evil.example/", "/account"},
		{"port differs", "https://app.hestami.example:8443/", "/account"},
		{"scheme relative", "//evil.example/", "/account"},
		{"backslash", "/\\evil.example", "/account"},
		{"backslash scheme relative", "\\\\evil.example", "/account"},
		{"javascript", "javascript:alert(1)", "/account"},
		{"data", "data:text/html,hi", "/account"},
		{"userinfo", "https://app.hestami.example@evil.example/", "/account"},
		{"relative", "account", "/account"},
		{"newline", "/a\r\nLocation: https://evil.example", "/account"},
		{"tab in scheme", "ht\ttps://evil.example", "/account"},
		{"http downgrade", "http://app.hestami.example/", "/account"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := SafeReturnTo(tc.in, origins, "/account"); got != tc.want {
				t.Errorf("SafeReturnTo(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzSafeReturnTo(f *testing.F) {
	for _, s := range []string{"/a", "//x", "https://app.hestami.example/", "/\\x", "http://a@b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := SafeReturnTo(s, []string{"https://app.hestami.example"}, "/fallback")
		if got == "/fallback" {
			return
		}
		if len(got) >= 2 && (got[1] == '/' || got[1] == '\\') {
			t.Fatalf("%q -> %q: scheme-relative", s, got)
		}
		if got[0] != '/' && len(got) < len("https://app.hestami.example") {
			t.Fatalf("%q -> %q", s, got)
		}
	})
}
