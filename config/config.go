// Package config loads hestami's configuration: defaults, then a YAML file (with
// ${VAR} references expanded from the environment), then HESTAMI_* and libpq
// environment variables, then *_FILE secrets.
package config

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // time zones for retention, whatever the machine has

	"go.yaml.in/yaml/v3"
)

// Config is hestami's whole configuration.
type Config struct {
	Storage   Storage   `yaml:"storage"`
	Postgres  Postgres  `yaml:"postgres"`
	WAL       WAL       `yaml:"wal"`
	Backup    Backup    `yaml:"backup"`
	Retention Retention `yaml:"retention"`
	Log       Log       `yaml:"log"`
	// Encryption and Signing protect the repository's objects.
	Encryption Encryption `yaml:"encryption"`
	Signing    Signing    `yaml:"signing"`
	// Daemon and Notifications configure hestami backup daemon (daemon.go).
	Daemon        Daemon        `yaml:"daemon"`
	Notifications Notifications `yaml:"notifications"`
	// Auth configures hestami auth serve (auth.go).
	Auth Auth `yaml:"auth"`
}

// Encryption encrypts every object with age. Pushing needs only the recipients;
// fetching, restoring and verifying need the identity.
type Encryption struct {
	// Recipients are age X25519 public keys (age1...): every new object is
	// encrypted to all of them (a current key, a break-glass key kept offline...).
	Recipients []string `yaml:"recipients"`
	// IdentityFile holds age identities (AGE-SECRET-KEY-1...), read only when an
	// object is decrypted.
	IdentityFile string `yaml:"identity_file"`
}

// Signing signs manifests, WAL and every other object with ed25519, with a key
// separate from the encryption keys.
type Signing struct {
	// KeyFile holds the private signing key (hestami-sign-key:...), read only when
	// an object is stored.
	KeyFile string `yaml:"key_file"`
	// PublicKeys are the trusted signers (hestami-sign-pub:...): with any, objects
	// that are unsigned or signed by another key are refused.
	PublicKeys []string `yaml:"public_keys"`
	// AllowUnsigned accepts unsigned objects despite PublicKeys, each logged as a
	// warning.
	AllowUnsigned bool `yaml:"allow_unsigned"`
}

// Storage says where the repository lives.
type Storage struct {
	// URL of the repository: file:///var/lib/hestami/backup (or a plain path).
	URL string `yaml:"url"`
	// WALURL, when set, keeps archived WAL in a repository of its own.
	WALURL string `yaml:"wal_url"`
	// SecondaryURL, when set, is a second repository that every backup and WAL file
	// is copied to, and that restores and WAL fetches fall back to
	// (docs/configuration.md, "Secondary storage").
	SecondaryURL string `yaml:"secondary_url"`
	// AllowInsecureHTTP lets an object-store URL use a plain-HTTP endpoint: for
	// local emulators only (docs/configuration.md, "Storage URLs").
	AllowInsecureHTTP bool `yaml:"allow_insecure_http"`
	// PartSize is the size of each part an upload to an object store sends (and
	// buffers); the largest S3 object is 10,000 parts.
	PartSize ByteSize `yaml:"part_size"`
	// UploadConcurrency is how many parts of one object are uploaded at once.
	UploadConcurrency int `yaml:"upload_concurrency"`
}

// Postgres is how to reach the cluster being backed up. Empty fields fall back to
// libpq's own defaults (and ~/.pgpass).
type Postgres struct {
	Host     string `yaml:"host"`
	Port     int    `yaml:"port"`
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	Database string `yaml:"database"`
	// BinDir holds pg_dump, pg_restore, postgres...; empty: the newest installed.
	BinDir string `yaml:"bin_dir"`
}

// WAL tunes archiving and fetching.
type WAL struct {
	// PushParallel is how many ready segments one archive_command call pushes at once.
	PushParallel int `yaml:"push_parallel"`
	// Prefetch is how many following segments wal fetch downloads ahead.
	Prefetch int `yaml:"prefetch"`
}

// Backup tunes backups.
type Backup struct {
	// CompressionLevel is the zstd level, 1 (fastest) to 4 (smallest).
	CompressionLevel int `yaml:"compression_level"`
	// Parallel is how many cores compression and restore may use.
	Parallel int `yaml:"parallel"`
}

// Retention is the grandfather-father-son policy backup prune applies.
type Retention struct {
	Tiers `yaml:",inline"`
	// TimeZone is the calendar days, weeks and months are counted in (IANA name).
	TimeZone string `yaml:"time_zone"`
	// PITRWindow is the tier whose oldest physical backup starts the window of
	// continuous WAL: daily, weekly or monthly.
	PITRWindow string `yaml:"pitr_window"`
	// IncompleteGrace is how long a failed or interrupted backup is left alone.
	IncompleteGrace time.Duration `yaml:"incomplete_grace"`
	// Physical and Logical override the tiers per backup type.
	Physical *Tiers `yaml:"physical"`
	Logical  *Tiers `yaml:"logical"`
}

// Tiers are how many daily, weekly and monthly backups to keep.
type Tiers struct {
	Daily   int `yaml:"daily"`
	Weekly  int `yaml:"weekly"`
	Monthly int `yaml:"monthly"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Default returns the configuration before any file or environment.
func Default() Config {
	return Config{
		Storage: Storage{PartSize: 16 << 20, UploadConcurrency: 4},
		WAL:     WAL{PushParallel: 4, Prefetch: 8},
		Backup:  Backup{CompressionLevel: 1, Parallel: runtime.NumCPU()},
		Retention: Retention{Tiers: Tiers{Daily: 7, Weekly: 4, Monthly: 6}, TimeZone: "UTC",
			PITRWindow: "daily", IncompleteGrace: 24 * time.Hour},
		Log:           Log{Level: "info", Format: "text"},
		Daemon:        DefaultDaemon(),
		Notifications: DefaultNotifications(),
		Auth:          DefaultAuth(),
	}
}

// Load builds the configuration from path (may be empty) and the environment given as
// a lookup function (os.LookupEnv in production).
func Load(path string, getenv func(string) (string, bool)) (Config, error) {
	c := Default()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("read config file: %w", err)
		}
		expanded := os.Expand(string(b), func(k string) string { v, _ := getenv(k); return v })
		dec := yaml.NewDecoder(strings.NewReader(expanded))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("config file %s: %w", path, err)
		}
	}
	var errs []error
	env := func(name string) (string, bool) {
		if f, ok := getenv(name + "_FILE"); ok && f != "" {
			b, err := os.ReadFile(f)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s_FILE: %w", name, err))
				return "", false
			}
			return strings.TrimRight(string(b), "\r\n"), true
		}
		return getenv(name)
	}
	str := func(name string, dst *string) {
		if v, ok := env(name); ok && v != "" {
			*dst = v
		}
	}
	list := func(name string, dst *[]string) {
		if v, ok := env(name); ok && v != "" {
			*dst = SplitList(v)
		}
	}
	boolean := func(name string, dst *bool) {
		if v, ok := env(name); ok && v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: want true or false", name, v))
				return
			}
			*dst = b
		}
	}
	num := func(name string, dst *int) {
		if v, ok := env(name); ok && v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: not a number", name, v))
				return
			}
			*dst = n
		}
	}
	str("HESTAMI_STORAGE_URL", &c.Storage.URL)
	str("HESTAMI_WAL_STORAGE_URL", &c.Storage.WALURL)
	str("HESTAMI_SECONDARY_STORAGE_URL", &c.Storage.SecondaryURL)
	boolean("HESTAMI_STORAGE_ALLOW_HTTP", &c.Storage.AllowInsecureHTTP)
	if v, ok := env("HESTAMI_STORAGE_PART_SIZE"); ok && v != "" {
		if err := c.Storage.PartSize.Set(v); err != nil {
			errs = append(errs, fmt.Errorf("HESTAMI_STORAGE_PART_SIZE=%q: %w", v, err))
		}
	}
	num("HESTAMI_STORAGE_UPLOAD_CONCURRENCY", &c.Storage.UploadConcurrency)
	str("PGHOST", &c.Postgres.Host)
	num("PGPORT", &c.Postgres.Port)
	str("PGUSER", &c.Postgres.User)
	str("PGPASSWORD", &c.Postgres.Password)
	str("PGDATABASE", &c.Postgres.Database)
	str("HESTAMI_PG_BINDIR", &c.Postgres.BinDir)
	num("HESTAMI_WAL_PUSH_PARALLEL", &c.WAL.PushParallel)
	num("HESTAMI_WAL_PREFETCH", &c.WAL.Prefetch)
	num("HESTAMI_COMPRESSION_LEVEL", &c.Backup.CompressionLevel)
	num("HESTAMI_PARALLEL", &c.Backup.Parallel)
	str("HESTAMI_LOG_LEVEL", &c.Log.Level)
	str("HESTAMI_LOG_FORMAT", &c.Log.Format)
	list("HESTAMI_ENCRYPTION_RECIPIENTS", &c.Encryption.Recipients)
	str("HESTAMI_ENCRYPTION_IDENTITY_FILE", &c.Encryption.IdentityFile)
	str("HESTAMI_SIGNING_KEY_FILE", &c.Signing.KeyFile)
	list("HESTAMI_SIGNING_PUBLIC_KEYS", &c.Signing.PublicKeys)
	boolean("HESTAMI_SIGNING_ALLOW_UNSIGNED", &c.Signing.AllowUnsigned)
	c.Auth.loadEnv(str, list, boolean)
	c.Daemon.loadEnv(str, list)
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Validate reports every problem with its field path.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	for field, u := range map[string]string{"storage.url": c.Storage.URL, "storage.wal_url": c.Storage.WALURL, "storage.secondary_url": c.Storage.SecondaryURL} {
		if u == "" {
			continue
		}
		if _, err := url.Parse(u); err != nil {
			bad(field, "invalid URL %q", u)
		}
	}
	if c.Storage.PartSize < 5<<20 || c.Storage.PartSize > 5<<30 {
		bad("storage.part_size", "%s: want 5MiB to 5GiB", c.Storage.PartSize)
	}
	if c.Storage.UploadConcurrency < 1 || c.Storage.UploadConcurrency > 64 {
		bad("storage.upload_concurrency", "%d: want 1 to 64", c.Storage.UploadConcurrency)
	}
	if c.Postgres.Port < 0 || c.Postgres.Port > 65535 {
		bad("postgres.port", "%d is not a port", c.Postgres.Port)
	}
	if c.WAL.PushParallel < 1 || c.WAL.PushParallel > 64 {
		bad("wal.push_parallel", "%d: want 1 to 64", c.WAL.PushParallel)
	}
	if c.WAL.Prefetch < 0 || c.WAL.Prefetch > 64 {
		bad("wal.prefetch", "%d: want 0 to 64", c.WAL.Prefetch)
	}
	if c.Backup.CompressionLevel < 1 || c.Backup.CompressionLevel > 4 {
		bad("backup.compression_level", "%d: want 1 (fastest) to 4 (smallest)", c.Backup.CompressionLevel)
	}
	if c.Backup.Parallel < 1 {
		bad("backup.parallel", "%d: want at least 1", c.Backup.Parallel)
	}
	for field, t := range map[string]*Tiers{"retention": &c.Retention.Tiers, "retention.physical": c.Retention.Physical, "retention.logical": c.Retention.Logical} {
		if t != nil && (t.Daily < 0 || t.Weekly < 0 || t.Monthly < 0 || t.Daily+t.Weekly+t.Monthly == 0) {
			bad(field, "daily %d, weekly %d, monthly %d: want no negative tier and at least one backup kept", t.Daily, t.Weekly, t.Monthly)
		}
	}
	if _, err := time.LoadLocation(c.Retention.TimeZone); err != nil {
		bad("retention.time_zone", "%q: not a time zone name (e.g. UTC, Europe/Berlin)", c.Retention.TimeZone)
	}
	switch c.Retention.PITRWindow {
	case "daily", "weekly", "monthly":
	default:
		bad("retention.pitr_window", "%q: want daily, weekly or monthly", c.Retention.PITRWindow)
	}
	for i, r := range c.Encryption.Recipients {
		if !strings.HasPrefix(r, "age1") {
			bad(fmt.Sprintf("encryption.recipients[%d]", i), "%.12q...: want an age public key, age1... (see hestami keys generate)", r)
		}
	}
	for i, k := range c.Signing.PublicKeys {
		if !strings.HasPrefix(k, "hestami-sign-pub:") {
			bad(fmt.Sprintf("signing.public_keys[%d]", i), "%.20q...: want a signing public key, hestami-sign-pub:... (see hestami keys generate --signing)", k)
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q: want text or json", c.Log.Format)
	}
	c.Daemon.validate(bad)
	c.Notifications.validate(bad)
	c.Auth.validate(bad)
	return errors.Join(errs...)
}

// SplitList splits a list of keys given in one string: separated by commas or
// newlines, blank entries and # comment lines skipped.
func SplitList(s string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, f := range strings.Split(line, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
	}
	return out
}

// RequireStorage returns an error unless a repository location is configured.
func (c Config) RequireStorage() error {
	if c.Storage.URL == "" {
		return errors.New("no repository configured: set HESTAMI_STORAGE_URL (e.g. file:///var/lib/hestami/backup) or storage.url in the config file")
	}
	return nil
}

// ConnString returns a libpq keyword/value connection string for database db (empty:
// the configured database). Fields left empty are left to libpq's defaults.
func (p Postgres) ConnString(db string) string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"='"+strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v)+"'")
		}
	}
	add("host", p.Host)
	if p.Port != 0 {
		add("port", strconv.Itoa(p.Port))
	}
	add("user", p.User)
	add("password", p.Password)
	if db == "" {
		db = p.Database
	}
	add("dbname", db)
	return strings.Join(parts, " ")
}

// Env returns the libpq environment for child processes (pg_dump, psql, ...).
func (p Postgres) Env() []string {
	var env []string
	add := func(k, v string) {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	add("PGHOST", p.Host)
	if p.Port != 0 {
		add("PGPORT", strconv.Itoa(p.Port))
	}
	add("PGUSER", p.User)
	add("PGPASSWORD", p.Password)
	return env
}
