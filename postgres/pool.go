package postgres

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// minPoolConns is the fewest connections OpenPool's pool may open, unless the URL
// says otherwise (pool_max_conns).
const minPoolConns = 16

// OpenPool opens a connection pool to the auth service's database and checks that
// it answers. dbURL is a PostgreSQL URL or keyword/value string (HESTAMI_DATABASE_URL);
// empty, or any field it leaves out, comes from the libpq environment (PGHOST,
// PGPORT, PGUSER, PGPASSWORD, PGDATABASE) and libpq's defaults. Errors name the
// host, port, database and user, never the password.
func OpenPool(ctx context.Context, dbURL string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("database settings: %s (check HESTAMI_DATABASE_URL, e.g. postgres://user@host:5432/dbname, or the PG* variables)",
			redactPassword(err.Error(), dbURL, ""))
	}
	if !strings.Contains(dbURL, "pool_max_conns") && cfg.MaxConns < minPoolConns {
		// pgxpool's default (4, or the CPU count) starves a web service whose
		// every request asks the database; PostgreSQL's default allows 100.
		cfg.MaxConns = minPoolConns
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %s", redactPassword(err.Error(), dbURL, cfg.ConnConfig.Password))
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.ConnConfig.ConnectTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		c := cfg.ConnConfig
		db := c.Database
		if db == "" {
			db = c.User // PostgreSQL's default
		}
		return nil, fmt.Errorf("connect to database %q at %s:%d as %q: %s (check that PostgreSQL is running and reachable there, and HESTAMI_DATABASE_URL or PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE)",
			db, c.Host, c.Port, c.User, redactPassword(err.Error(), dbURL, c.Password))
	}
	return pool, nil
}

var kvPassword = regexp.MustCompile(`password=('(?:[^'\\]|\\.)*'|\S*)`)

// redactPassword removes from msg every password it can find: the one the
// configuration holds, and those written in the connection string (which may not
// have parsed).
func redactPassword(msg, connString, password string) string {
	var secrets []string
	if password != "" {
		secrets = append(secrets, password)
	}
	if u, err := url.Parse(connString); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			secrets = append(secrets, p)
		}
	}
	if rest, ok := strings.CutPrefix(connString, "postgres://"); ok || strings.HasPrefix(connString, "postgresql://") {
		if !ok {
			rest = strings.TrimPrefix(connString, "postgresql://")
		}
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if _, p, ok := strings.Cut(rest[:at], ":"); ok && p != "" {
				secrets = append(secrets, p)
				if d, err := url.PathUnescape(p); err == nil && d != p && d != "" {
					secrets = append(secrets, d)
				}
			}
		}
	}
	for _, m := range kvPassword.FindAllStringSubmatch(connString, -1) {
		if p := strings.Trim(m[1], "'"); p != "" {
			secrets = append(secrets, p)
		}
	}
	for _, s := range secrets {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	return msg
}
