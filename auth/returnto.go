package auth

import (
	"net/url"
	"strings"
)

// SafeReturnTo returns where to send the browser after sign-in: raw if it is a
// path on this service ("/account", never "//evil" or "/\evil") or an absolute
// http(s) URL on one of origins ("https://app.hestami.example"); fallback
// otherwise. Anything else would make the sign-in an open redirect.
func SafeReturnTo(raw string, origins []string, fallback string) string {
	if raw == "" || len(raw) > 2048 || strings.ContainsAny(raw, "\\\r\n\t\x00") {
		return fallback
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fallback
	}
	if u.Scheme == "" && u.Host == "" && u.User == nil && !strings.HasPrefix(raw, "//") {
		if strings.HasPrefix(raw, "/") {
			return raw
		}
		return fallback
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.User != nil || u.Host == "" {
		return fallback
	}
	origin := u.Scheme + "://" + strings.ToLower(u.Host)
	for _, o := range origins {
		if strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return raw
		}
	}
	return fallback
}
