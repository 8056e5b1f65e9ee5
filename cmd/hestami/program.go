package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/config"
	"github.com/hestami/hestami/zstd"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Program is the hestami command line. Tests run it in-process with their own
// environment and output streams.
type Program struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) (string, bool)

	configPath string
	cfg        config.Config
	logger     *slog.Logger
	// allowUnsigned is --allow-unsigned (see keys.go).
	allowUnsigned  bool
	warnedUnsigned bool
}

// NewProgram returns a Program reading its environment through getenv.
func NewProgram(stdin io.Reader, stdout, stderr io.Writer, getenv func(string) (string, bool)) *Program {
	return &Program{Stdin: stdin, Stdout: stdout, Stderr: stderr, Getenv: getenv}
}

// Run executes the command line args (without the program name).
func (p *Program) Run(ctx context.Context, args []string) error {
	root := p.rootCommand()
	root.SetArgs(args)
	root.SetIn(p.Stdin)
	root.SetOut(p.Stdout)
	root.SetErr(p.Stderr)
	err := root.ExecuteContext(ctx)
	if err != nil && isUsageError(err) {
		return &exitError{code: ExitUsage, err: err}
	}
	return err
}

type usageError struct{ error }

func isUsageError(err error) bool {
	_, ok := err.(usageError)
	return ok || strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown flag") ||
		strings.HasPrefix(err.Error(), "unknown shorthand flag") || strings.Contains(err.Error(), "arg(s)") ||
		strings.HasPrefix(err.Error(), "invalid argument") || strings.HasPrefix(err.Error(), "required flag")
}

func (p *Program) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "hestami",
		Short: "The Hestami platform's infrastructure: PostgreSQL backups and recovery, and the sign-in service",
		Long: `hestami backs up the platform's PostgreSQL: continuous WAL archiving, physical base
backups for point-in-time recovery and logical dumps, into a self-describing repository.
hestami auth serve is the platform's sign-in service (docs/auth.md, docs/mfa.md);
hestami dev runs the whole stack locally.

Configuration: --config FILE (YAML), HESTAMI_* variables and the libpq variables
(PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE). See docs/configuration.md.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return p.setup()
		},
	}
	root.PersistentFlags().StringVar(&p.configPath, "config", "", "configuration file (YAML; ${VAR} is expanded from the environment)")
	root.PersistentFlags().BoolVar(&p.allowUnsigned, "allow-unsigned", false, "accept unsigned objects although signing.public_keys are set (each logged as a warning)")
	root.AddCommand(p.keysCommand())
	root.AddCommand(p.walCommand(), p.backupCommand(), p.restoreCommand(), p.auditCommand(), p.devCommand())
	root.AddCommand(p.storageCommand())     // storage_check.go
	root.AddCommand(p.authCommand())        // auth.go, auth_serve.go
	root.AddCommand(p.healthcheckCommand()) // healthcheck.go
	root.AddCommand(p.dbCommand())          // db.go
	return root
}

func (p *Program) setup() error {
	path := p.configPath
	if path == "" {
		if v, ok := p.Getenv("HESTAMI_CONFIG"); ok {
			path = v
		}
	}
	cfg, err := config.Load(path, p.Getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	p.cfg = cfg
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.Log.Format == "json" {
		p.logger = slog.New(slog.NewJSONHandler(p.Stderr, opts))
	} else {
		p.logger = slog.New(slog.NewTextHandler(p.Stderr, opts))
	}
	return nil
}

// repository opens the backup repository; for WAL it honours HESTAMI_WAL_STORAGE_URL.
func (p *Program) repository(forWAL bool) (*backup.Repository, error) {
	if err := p.cfg.RequireStorage(); err != nil {
		return nil, err
	}
	u := p.cfg.Storage.URL
	if forWAL && p.cfg.Storage.WALURL != "" {
		u = p.cfg.Storage.WALURL
	}
	st, err := p.storage(u) // storage.go
	if err != nil {
		return nil, err
	}
	return p.openRepository(st)
}

// readRepository is repository for commands that only read (wal fetch, restore,
// backup list|show|verify): with a secondary storage configured, what the primary
// does not have or cannot serve is read from the secondary (backup.Fallback).
func (p *Program) readRepository(forWAL bool) (*backup.Repository, error) {
	repo, err := p.repository(forWAL)
	if err != nil || p.cfg.Storage.SecondaryURL == "" {
		return repo, err
	}
	sec, err := p.storage(p.cfg.Storage.SecondaryURL)
	if err != nil {
		return nil, fmt.Errorf("secondary storage: %w", err)
	}
	repo.Storage = &backup.Fallback{Primary: repo.Storage, Secondary: sec, Logger: p.logger}
	return repo, nil
}

// secondaryRepository opens the secondary repository (storage.secondary_url); nil,
// nil when none is configured.
func (p *Program) secondaryRepository() (*backup.Repository, error) {
	if p.cfg.Storage.SecondaryURL == "" {
		return nil, nil
	}
	st, err := p.storage(p.cfg.Storage.SecondaryURL)
	if err != nil {
		return nil, fmt.Errorf("secondary storage: %w", err)
	}
	return p.openRepository(st)
}

// openRepository returns the repository in st with the configured codec and keys.
func (p *Program) openRepository(st backup.Storage) (*backup.Repository, error) {
	repo := &backup.Repository{
		Storage: st,
		Codec:   zstd.Codec{Level: p.cfg.Backup.CompressionLevel},
		Logger:  p.logger,
	}
	if err := p.secureRepository(repo); err != nil { // keys.go
		return nil, err
	}
	return repo, nil
}

// printJSON writes v as indented JSON to stdout.
func (p *Program) printJSON(v any) error {
	enc := json.NewEncoder(p.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// executable returns the absolute path of the running hestami binary, for the
// archive_command and restore_command it writes into PostgreSQL's configuration.
func executable() string {
	exe, err := os.Executable()
	if err != nil {
		return "hestami"
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		return r
	}
	return exe
}
