package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrNoBinaries is returned (wrapped) by FindBinaries when no usable PostgreSQL
// server installation was found.
var ErrNoBinaries = errors.New("postgresql server binaries not found")

// debianRoot is where Debian and Ubuntu install one directory per major version.
const debianRoot = "/usr/lib/postgresql"

// requiredBinaries are the programs a directory must hold to count as a server install.
var requiredBinaries = []string{"postgres", "initdb", "pg_ctl"}

// Binaries is a directory of PostgreSQL server programs of one major version.
type Binaries struct {
	Dir   string // directory holding postgres, initdb, pg_ctl, pg_basebackup, ...
	Major int    // major version, e.g. 15
}

// Path returns the full path of the program name in b.Dir.
func (b Binaries) Path(name string) string {
	return filepath.Join(b.Dir, name)
}

// FindBinaries locates the PostgreSQL server programs, of major version minMajor or
// newer. It looks, in order, at:
//
//  1. $HESTAMI_PG_BINDIR, which wins if set (an unusable value is an error, not skipped);
//  2. the newest /usr/lib/postgresql/*/bin holding postgres, initdb and pg_ctl;
//  3. the directory printed by `pg_config --bindir`, if pg_config is on PATH.
//
// The major version is read from `postgres --version`. It returns an error wrapping
// ErrNoBinaries when nothing usable is found, saying what was searched and what to do.
func FindBinaries(minMajor int) (Binaries, error) {
	if dir := os.Getenv("HESTAMI_PG_BINDIR"); dir != "" {
		b, err := inspectBinDir(dir)
		if err != nil {
			return Binaries{}, fmt.Errorf("HESTAMI_PG_BINDIR=%s: %w; point it at the directory holding the postgres server program (for example /usr/lib/postgresql/15/bin) or unset it", dir, err)
		}
		if b.Major < minMajor {
			return Binaries{}, fmt.Errorf("HESTAMI_PG_BINDIR=%s holds PostgreSQL %d, need %d or newer: %w", dir, b.Major, minMajor, ErrNoBinaries)
		}
		return b, nil
	}

	var searched, tooOld []string
	inspected := map[string]bool{}

	dirs, err := debianBinDirs()
	if err != nil {
		return Binaries{}, err
	}
	searched = append(searched, debianRoot+"/*/bin")
	for _, dir := range dirs {
		inspected[dir] = true
		b, err := inspectBinDir(dir)
		if err != nil {
			continue // incomplete install (client only, say): try the next version
		}
		if b.Major < minMajor {
			tooOld = append(tooOld, fmt.Sprintf("%s (PostgreSQL %d)", dir, b.Major))
			continue
		}
		return b, nil
	}

	if pgConfig, err := exec.LookPath("pg_config"); err == nil {
		searched = append(searched, "pg_config --bindir")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, pgConfig, "--bindir").Output()
		cancel()
		if dir := filepath.Clean(strings.TrimSpace(string(out))); err == nil && !inspected[dir] {
			if b, err := inspectBinDir(dir); err == nil {
				if b.Major >= minMajor {
					return b, nil
				}
				tooOld = append(tooOld, fmt.Sprintf("%s (PostgreSQL %d)", dir, b.Major))
			}
		}
	} else {
		searched = append(searched, "pg_config on PATH (not found)")
	}

	msg := fmt.Sprintf("searched $HESTAMI_PG_BINDIR (unset), %s", strings.Join(searched, ", "))
	if len(tooOld) > 0 {
		msg += fmt.Sprintf("; too old: %s", strings.Join(tooOld, ", "))
	}
	return Binaries{}, fmt.Errorf("%w (need PostgreSQL %d or newer with postgres, initdb and pg_ctl): %s; install the PostgreSQL server packages (make deps, or apt-get install postgresql) or set HESTAMI_PG_BINDIR to the directory holding the postgres program",
		ErrNoBinaries, minMajor, msg)
}

// debianBinDirs returns /usr/lib/postgresql/<major>/bin directories, newest first.
func debianBinDirs() ([]string, error) {
	entries, err := os.ReadDir(debianRoot)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", debianRoot, err)
	}
	type versioned struct {
		dir     string
		version float64
	}
	var found []versioned
	for _, e := range entries {
		// Directory names are majors ("15") or, before PostgreSQL 10, "9.6".
		v, err := strconv.ParseFloat(e.Name(), 64)
		if err != nil {
			continue
		}
		found = append(found, versioned{filepath.Join(debianRoot, e.Name(), "bin"), v})
	}
	sort.Slice(found, func(i, j int) bool { return found[i].version > found[j].version })
	dirs := make([]string, len(found))
	for i, f := range found {
		dirs[i] = f.dir
	}
	return dirs, nil
}

// inspectBinDir checks that dir holds the server programs and reads their version.
func inspectBinDir(dir string) (Binaries, error) {
	for _, name := range requiredBinaries {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return Binaries{}, fmt.Errorf("no %s in %s: %w", name, dir, ErrNoBinaries)
		}
		if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return Binaries{}, fmt.Errorf("%s in %s is not executable: %w", name, dir, ErrNoBinaries)
		}
	}
	b := Binaries{Dir: dir}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// postgres --version is answered before the refuse-to-run-as-root check.
	out, err := exec.CommandContext(ctx, b.Path("postgres"), "--version").Output()
	if err != nil {
		return Binaries{}, fmt.Errorf("run %s --version: %w", b.Path("postgres"), err)
	}
	major, err := parseMajor(out)
	if err != nil {
		return Binaries{}, fmt.Errorf("read version of %s: %w", b.Path("postgres"), err)
	}
	b.Major = major
	return b, nil
}

// parseMajor reads the major version from `postgres --version` output such as
// "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" or "postgres (PostgreSQL) 17beta1".
func parseMajor(out []byte) (int, error) {
	const marker = "(PostgreSQL) "
	i := bytes.Index(out, []byte(marker))
	if i < 0 {
		return 0, fmt.Errorf("unexpected version output %q", bytes.TrimSpace(out))
	}
	rest := out[i+len(marker):]
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	major, err := strconv.Atoi(string(rest[:n]))
	if err != nil {
		return 0, fmt.Errorf("unexpected version output %q", bytes.TrimSpace(out))
	}
	return major, nil
}
