// Package redis shares the auth service's rate limits and lockouts between its
// replicas through a Redis server (github.com/redis/go-redis/v9): Limiter
// implements auth.Limiter and LockoutStore auth.LockoutStore, each update atomic
// on the server, so several replicas count as one.
package redis

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"

	goredis "github.com/redis/go-redis/v9"
)

// keyPrefix namespaces every key this package writes.
const keyPrefix = "hestami:"

// Open connects to the Redis server at rawURL and checks that it answers (PING).
// rawURL is redis://[[user]:password@]host[:port][/db] — rediss:// for TLS (use it
// for any server off the machine), or unix:///path/to/socket — with go-redis's
// query options (dial_timeout=3s, pool_size=20...). rootCAs verifies a rediss://
// server's certificate; nil uses the system's roots.
//
// Errors name the server (host:port), never the password.
func Open(ctx context.Context, rawURL string, rootCAs *x509.CertPool) (*goredis.Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error repeats the URL, password included: keep only the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("redis URL: %v (want redis://[user:password@]host:port/db or rediss://...)", err)
	}
	host := u.Host
	if u.Scheme == "unix" {
		host = u.Path
	}
	opts, err := goredis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis URL for %s: %w", host, err)
	}
	if opts.TLSConfig != nil {
		opts.TLSConfig.RootCAs = rootCAs
		opts.TLSConfig.MinVersion = tls.VersionTLS12
	}
	c := goredis.NewClient(opts)
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		hint := "check that it runs and the URL's host, port and password"
		if opts.TLSConfig == nil {
			hint += "; a server that speaks TLS needs a rediss:// URL"
		}
		return nil, fmt.Errorf("redis at %s: %w (%s)", opts.Addr, err, hint)
	}
	return c, nil
}
