package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/progress"
)

func (p *Program) storageCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "storage",
		Short: "Check the storages and keep the secondary copy in sync",
	}
	cmd.AddCommand(p.storageCheckCommand(), p.storageSyncCommand())
	return cmd
}

// storageReport is what storage check found about one storage.
type storageReport struct {
	Role      string         `json:"role"` // primary, wal, secondary
	Storage   string         `json:"storage"`
	OK        bool           `json:"ok"`
	Checks    []storageProbe `json:"checks"`
	FreeBytes *uint64        `json:"free_bytes,omitempty"`
	// Repository is the marker found; nil when there is none (yet).
	Repository *backup.Marker `json:"repository,omitempty"`
}

// storageProbe is one check: what was tried, whether it worked, and what to do if not.
type storageProbe struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
	Fix    string `json:"fix,omitempty"`
}

func (p *Program) storageCheckCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check each configured storage: connectivity, permissions, free space, repository",
		Long: `Checks the primary storage (storage.url), the WAL storage (storage.wal_url) when it is
separate and the secondary (storage.secondary_url) when set: it writes a probe object under
.hestami-probe/, reads it back, lists it, deletes it, reports free space where the backend
can tell, and whether a repository exists there (its format and cluster). Exit 1 when any
check fails; each failure says what to fix.`,
		Example: `  hestami storage check
  hestami storage check --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if err := p.cfg.RequireStorage(); err != nil {
				return err
			}
			targets := [][2]string{{"primary", p.cfg.Storage.URL}}
			if u := p.cfg.Storage.WALURL; u != "" && u != p.cfg.Storage.URL {
				targets = append(targets, [2]string{"wal", u})
			}
			if u := p.cfg.Storage.SecondaryURL; u != "" {
				targets = append(targets, [2]string{"secondary", u})
			}
			reports := []storageReport{}
			failed := 0
			for _, t := range targets {
				r := p.checkStorage(ctx, t[0], t[1])
				if !r.OK {
					failed++
				}
				reports = append(reports, r)
			}
			if asJSON {
				if err := p.printJSON(reports); err != nil {
					return err
				}
			} else {
				printStorageReports(p.Stdout, reports)
			}
			if failed > 0 {
				return &exitError{code: ExitError, err: fmt.Errorf("storage check: %d of %d storages failed (see the fixes above)", failed, len(reports))}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printStorageReports(w io.Writer, reports []storageReport) {
	for i, r := range reports {
		if i > 0 {
			fmt.Fprintln(w)
		}
		state := "OK"
		if !r.OK {
			state = "FAILED"
		}
		fmt.Fprintf(w, "%s storage %s: %s\n", r.Role, r.Storage, state)
		for _, c := range r.Checks {
			mark := "ok  "
			if !c.OK {
				mark = "FAIL"
			}
			fmt.Fprintf(w, "  %s %-10s %s\n", mark, c.Name, c.Detail)
			if c.Fix != "" {
				fmt.Fprintf(w, "       fix: %s\n", c.Fix)
			}
		}
	}
}

// checkStorage runs every check against one storage; later checks are skipped when
// an earlier one they depend on failed.
func (p *Program) checkStorage(ctx context.Context, role, rawURL string) storageReport {
	rep := storageReport{Role: role, Storage: redactURL(rawURL), OK: true, Checks: []storageProbe{}}
	add := func(name string, err error, detail, fix string) bool {
		c := storageProbe{Name: name, OK: err == nil, Detail: detail}
		if err != nil {
			c.Detail = err.Error()
			c.Fix = fix
			rep.OK = false
		}
		rep.Checks = append(rep.Checks, c)
		return err == nil
	}
	st, err := p.storage(rawURL)
	if !add("open", err, "storage opened", "check the URL "+configName(role)+" and the credentials in the environment") {
		return rep
	}
	rep.Storage = st.String()

	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	key := ".hestami-probe/" + hex.EncodeToString(nonce[:])
	body := []byte("hestami storage check " + key + "\n")
	if !add("write", st.Put(ctx, key, bytes.NewReader(body), false), "wrote "+key, permissionFix(rawURL, "write")) {
		return rep
	}
	var got []byte
	rc, err := st.Open(ctx, key)
	if err == nil {
		got, err = io.ReadAll(rc)
		rc.Close()
		if err == nil && !bytes.Equal(got, body) {
			err = fmt.Errorf("read back %d bytes that differ from the %d written", len(got), len(body))
		}
	}
	add("read", err, "read back byte-equal", permissionFix(rawURL, "read"))
	objs, err := st.List(ctx, ".hestami-probe/")
	if err == nil && !containsKey(objs, key) {
		err = fmt.Errorf("listing .hestami-probe/ does not show %s that was just written", key)
	}
	add("list", err, "listing shows the probe", permissionFix(rawURL, "list"))
	err = st.Delete(ctx, key)
	if err == nil {
		if _, serr := st.Stat(ctx, key); !errors.Is(serr, backup.ErrNotFound) {
			err = fmt.Errorf("%s still there after delete (stat: %v)", key, serr)
		}
	}
	add("delete", err, "deleted, gone", permissionFix(rawURL, "delete"))

	if sr, ok := st.(backup.SpaceReporter); ok {
		free, err := sr.FreeSpace(ctx)
		if add("space", err, progress.Bytes(int64(free))+" free", "check that the volume is mounted") {
			rep.FreeBytes = &free
		}
	}

	repo := &backup.Repository{Storage: st, Logger: p.logger}
	m, err := repo.Marker(ctx)
	switch {
	case errors.Is(err, backup.ErrNoRepository):
		add("repository", nil, "none yet (the first wal push or backup push creates it; storage sync creates the secondary's)", "")
	case err != nil:
		add("repository", err, "", "point "+configName(role)+" at a repository written by this hestami version, or at an empty location")
	default:
		rep.Repository = &m
		enc := ""
		if m.Encrypted {
			enc = ", encrypted"
		}
		add("repository", nil, fmt.Sprintf("format %d, cluster %d, WAL segment %s%s", m.Format, m.SystemIdentifier, progress.Bytes(int64(m.WALSegmentSize)), enc), "")
	}
	return rep
}

func containsKey(objs []backup.ObjectInfo, key string) bool {
	for _, o := range objs {
		if o.Key == key {
			return true
		}
	}
	return false
}

func configName(role string) string {
	switch role {
	case "wal":
		return "storage.wal_url (HESTAMI_WAL_STORAGE_URL)"
	case "secondary":
		return "storage.secondary_url (HESTAMI_SECONDARY_STORAGE_URL)"
	}
	return "storage.url (HESTAMI_STORAGE_URL)"
}

// permissionFix says which permission an operation needs on the backend of rawURL.
func permissionFix(rawURL, op string) string {
	u, err := url.Parse(rawURL)
	scheme := "file"
	if err == nil && u.Scheme != "" {
		scheme = u.Scheme
	}
	if strings.HasPrefix(rawURL, "/") || strings.HasPrefix(rawURL, ".") {
		scheme = "file"
	}
	switch scheme {
	case "s3":
		perm := map[string]string{"write": "s3:PutObject", "read": "s3:GetObject", "list": "s3:ListBucket", "delete": "s3:DeleteObject"}[op]
		res := "arn:aws:s3:::" + u.Host + "/" + strings.TrimPrefix(u.Path, "/") + "*"
		if op == "list" {
			res = "arn:aws:s3:::" + u.Host + " (with an s3:prefix condition allowing " + strings.TrimPrefix(u.Path, "/") + "*)"
		}
		return fmt.Sprintf("grant the IAM permission %s on %s to the credentials hestami uses (AWS_ACCESS_KEY_ID / AWS_PROFILE / the instance role); check the endpoint and region too", perm, res)
	case "gs":
		perm := map[string]string{"write": "storage.objects.create", "read": "storage.objects.get", "list": "storage.objects.list", "delete": "storage.objects.delete"}[op]
		return fmt.Sprintf("grant the permission %s on bucket %s to the service account hestami uses (GOOGLE_APPLICATION_CREDENTIALS), e.g. the role roles/storage.objectAdmin", perm, u.Host)
	case "azblob":
		return fmt.Sprintf("give the identity hestami uses (AZURE_STORAGE_ACCOUNT with a key, SAS token or managed identity) %s access to container %s: the role Storage Blob Data Contributor, or a SAS with r,w,l,d", op, u.Host)
	}
	dir := rawURL
	if err == nil && u.Scheme == "file" {
		dir = u.Path
	}
	return fmt.Sprintf("make %s %s by the user running hestami (uid %d): check its owner and mode, that the volume is mounted read-write and not full", filepath.Clean(dir),
		map[string]string{"write": "writable", "read": "readable", "list": "readable", "delete": "writable"}[op], os.Getuid())
}

// redactURL drops credentials from a URL for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = nil
	return u.String()
}

func (p *Program) storageSyncCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Copy to the secondary storage every backup and WAL file it is missing",
		Long: `Copies to the secondary repository (storage.secondary_url) the repository marker, every
archived WAL file and every complete backup it does not hold yet, each byte for byte and
verified by reading it back. backup push and wal push copy to the secondary as they go;
run sync after the secondary was unreachable, and periodically (cron, or the backup
daemon) so that a failed copy is never left behind. Objects are never deleted from the
secondary: apply retention there with hestami backup prune, HESTAMI_STORAGE_URL pointing
at the secondary.`,
		Example: `  hestami storage sync
  # every hour, from cron
  0 * * * * hestami --config /etc/hestami/hestami.yaml storage sync`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			res, sec, err := p.syncSecondary(cmd.Context())
			if sec == nil {
				return err
			}
			if asJSON {
				if perr := p.printJSON(res); perr != nil {
					return perr
				}
			} else {
				fmt.Fprintf(p.Stdout, "Copied to %s: %d WAL files, %d backups", sec.Storage, len(res.WAL), len(res.Backups))
				if res.Marker {
					fmt.Fprint(p.Stdout, ", the repository marker")
				}
				fmt.Fprintln(p.Stdout)
				for _, id := range res.Backups {
					fmt.Fprintf(p.Stdout, "  backup %s\n", id)
				}
			}
			if err != nil {
				return fmt.Errorf("storage sync to %s: %w; fix the cause and run hestami storage sync again (it copies only what is missing)", sec.Storage, err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// copyToSecondary copies the complete backup id (and the repository marker, when the
// secondary has none) to the secondary storage, if one is configured.
func (p *Program) copyToSecondary(ctx context.Context, repo *backup.Repository, id string) error {
	sec, err := p.secondaryRepository()
	if err == nil && sec != nil {
		if _, err = repo.CopyMarker(ctx, sec); err == nil {
			err = repo.CopyBackup(ctx, sec, id)
		}
	}
	if err != nil {
		return &exitError{code: ExitError, err: fmt.Errorf("backup %s is complete in the primary repository %s, but copying it to the secondary storage failed: %w; "+
			"fix the secondary (hestami storage check) and retry the copy with: hestami storage sync", id, repo.Storage, err)}
	}
	if sec != nil {
		fmt.Fprintf(p.Stdout, "  secondary: copied to %s, verified\n", sec.Storage)
	}
	return nil
}

// pushWALToSecondary copies the WAL file just archived from path to the secondary.
// A failure is only logged: archiving into the primary must not depend on the
// secondary; storage sync copies what is missing later.
// secondaryWALTimeout bounds wal push's copy to the secondary storage.
const secondaryWALTimeout = 30 * time.Second

func (p *Program) pushWALToSecondary(ctx context.Context, repo *backup.Repository, path string) {
	log := p.logger.With("wal", filepath.Base(path))
	warn := func(err error) {
		log.Warn("WAL archived in the primary storage, but copying it to the secondary storage failed; archiving goes on. "+
			"Fix the secondary (hestami storage check), then run hestami storage sync", "err", err)
	}
	sec, err := p.secondaryRepository()
	if err != nil || sec == nil {
		if err != nil {
			warn(err)
		}
		return
	}
	wf, err := backup.ParseWALName(filepath.Base(path))
	if err != nil {
		return // not a WAL file name: Push already refused it
	}
	// A secondary that hangs must not hold up archiving: the copy gets a bounded
	// time, and storage sync makes it later.
	ctx, cancel := context.WithTimeout(ctx, secondaryWALTimeout)
	defer cancel()
	if _, err := repo.CopyMarker(ctx, sec); err != nil {
		warn(err)
		return
	}
	if err := repo.Copy(ctx, sec, backup.WALKey(wf)); err != nil {
		warn(err)
	}
}

// backupLocations returns, for a backup id, where it is complete: "primary",
// "secondary" (when repo reads through a backup.Fallback).
func backupLocations(ctx context.Context, repo *backup.Repository) func(id string) []string {
	f, ok := repo.Storage.(*backup.Fallback)
	if !ok {
		return func(string) []string { return []string{"primary"} }
	}
	has := func(st backup.Storage) map[string]bool {
		r := &backup.Repository{Storage: st}
		set := map[string]bool{}
		objs, err := st.List(ctx, "backups/")
		if err != nil {
			return set
		}
		for _, o := range objs {
			id, _, _ := strings.Cut(strings.TrimPrefix(o.Key, "backups/"), "/")
			if !set[id] {
				if ok, _ := r.HasBackup(ctx, id); ok {
					set[id] = true
				}
			}
		}
		return set
	}
	prim, sec := has(f.Primary), has(f.Secondary)
	return func(id string) []string {
		out := []string{}
		if prim[id] {
			out = append(out, "primary")
		}
		if sec[id] {
			out = append(out, "secondary")
		}
		return out
	}
}

// syncSecondary copies to the secondary storage what it lacks from the repository
// and, when WAL lives apart, from the WAL repository. It returns the secondary (nil
// when none is configured or it cannot be opened, with the error).
func (p *Program) syncSecondary(ctx context.Context) (backup.SyncResult, *backup.Repository, error) {
	sec, err := p.secondaryRepository()
	if err != nil {
		return backup.SyncResult{}, nil, err
	}
	if sec == nil {
		return backup.SyncResult{}, nil, errors.New("no secondary storage configured: set HESTAMI_SECONDARY_STORAGE_URL or storage.secondary_url")
	}
	repo, err := p.repository(false)
	if err != nil {
		return backup.SyncResult{}, nil, err
	}
	res, err := repo.Sync(ctx, sec)
	if u := p.cfg.Storage.WALURL; u != "" && u != p.cfg.Storage.URL {
		walRepo, werr := p.repository(true)
		if werr != nil {
			return res, sec, errors.Join(err, werr)
		}
		wres, werr := walRepo.Sync(ctx, sec)
		res.WAL = append(res.WAL, wres.WAL...)
		err = errors.Join(err, werr)
	}
	return res, sec, err
}
