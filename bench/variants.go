package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Operations of the encryption and s3 steps.
const (
	opEncBackup  = "encrypted backup"
	opEncRestore = "encrypted restore"
	opS3Backup   = "s3 backup"
	opS3Restore  = "s3 restore"
)

// s3Bucket is the bucket the s3 step creates in the emulator.
const s3Bucket = "hestami-bench"

// variant is one way of configuring hestami for a physical backup and restore:
// config writes the configuration of run i (a fresh repository) and returns the
// repository directory when it is a local one ("" otherwise).
type variant struct {
	backup, restore *result
	config          func(run int) (cfg, repoDir string, err error)
	runner          *runner
}

// backupRestore takes a physical backup with each variant and restores it, once per
// run, alternating the variants so drift in the machine's state hits both alike.
func (b *bench) backupRestore(ctx context.Context, vs []variant) error {
	for run := range b.opts.Runs {
		for _, v := range vs {
			if v.backup.failed() {
				continue
			}
			cfg, repoDir, err := v.config(run)
			if err != nil {
				return err
			}
			id, raw, err := b.timedBackup(ctx, v.runner, cfg, repoDir, v.backup)
			if err != nil {
				v.backup.fail(err)
				v.restore.fail(errors.New("no backup to restore: see the backup row"))
				continue
			}
			v.backup.RawBytes, v.restore.RawBytes = raw, raw
			if v.restore.failed() {
				continue
			}
			if err := b.timedRestore(ctx, v.runner, cfg, id, v.restore); err != nil {
				v.restore.fail(err)
			}
		}
	}
	for _, v := range vs {
		for _, r := range []*result{v.backup, v.restore} {
			if r.measured() && r.Seconds > 0 && r.RawBytes > 0 {
				r.PerSecond = float64(r.RawBytes) / 1e6 / r.Seconds
				r.Note = strings.TrimPrefix(r.Note+"; ", "; ") + fmt.Sprintf("%.1f MB/s of %s raw", r.PerSecond, humanBytes(r.RawBytes))
			}
		}
	}
	return nil
}

// timedBackup settles the cluster and times a physical backup with cfg, recording it
// in row; it returns the backup's id and raw (uncompressed) size.
func (b *bench) timedBackup(ctx context.Context, r *runner, cfg, repoDir string, row *result) (string, int64, error) {
	if err := b.settle(ctx); err != nil {
		return "", 0, err
	}
	p, err := r.run(ctx, b.work, b.hestami, "--config", cfg, "backup", "push", "--type", "physical")
	if err != nil {
		return "", 0, err
	}
	rows, err := b.backupsIn(ctx, r, cfg)
	if err != nil {
		return "", 0, err
	}
	for _, br := range slices.Backward(rows) {
		if br.Type != "physical" {
			continue
		}
		if br.Status != "complete" {
			return "", 0, fmt.Errorf("hestami backup push exited 0 but backup list shows %s as %s", br.ID, br.Status)
		}
		size := br.StoredSize
		if size == 0 && repoDir != "" {
			if size, err = dirSize(filepath.Join(repoDir, "backups", br.ID)); err != nil {
				return "", 0, err
			}
		}
		row.add(p.Wall, size, p.MaxRSS)
		return br.ID, br.Size, nil
	}
	return "", 0, errors.New("hestami backup push exited 0 but backup list --json shows no physical backup")
}

// timedRestore times hestami restore of backup id with cfg into an empty directory,
// removed afterwards.
func (b *bench) timedRestore(ctx context.Context, r *runner, cfg, id string, row *result) error {
	into := filepath.Join(b.work, "restore")
	_ = os.RemoveAll(into)
	if err := b.mkdir(into); err != nil {
		return err
	}
	defer os.RemoveAll(into)
	syscall.Sync()
	p, err := r.run(ctx, b.work, b.hestami, "--config", cfg, "restore", "--to", into, "--backup", id)
	if err != nil {
		return err
	}
	size, err := dirSize(into)
	if err != nil {
		return err
	}
	row.add(p.Wall, size, p.MaxRSS)
	return nil
}

// backupsIn lists the backups of the repository cfg names.
func (b *bench) backupsIn(ctx context.Context, r *runner, cfg string) ([]backupRow, error) {
	p, err := r.run(ctx, b.work, b.hestami, "--config", cfg, "backup", "list", "--json")
	if err != nil {
		return nil, err
	}
	var rows []backupRow
	if err := json.Unmarshal(p.Stdout, &rows); err != nil {
		return nil, fmt.Errorf("hestami backup list --json: %w", err)
	}
	return rows, nil
}

// writeVariantConfig writes a hestami config for storage URL u whose WAL repository
// is walURL (where the cluster's archive_command pushes), plus extra YAML.
func (b *bench) writeVariantConfig(path, u, walURL, extra string) error {
	insecure := ""
	if !strings.HasPrefix(u, "file:") {
		insecure = "\n  allow_insecure_http: true" // the emulator speaks plain HTTP
	}
	cfg := fmt.Sprintf(`storage:
  url: %s
  wal_url: %s%s
postgres:
  host: 127.0.0.1
  port: %d
  user: postgres
  database: postgres
  bin_dir: %s
log:
  level: info
%s`, strconv.Quote(u), strconv.Quote(walURL), insecure, b.cluster.Port, b.bin.Dir, extra)
	return b.writeFile(path, []byte(cfg))
}

// encryption times physical backup and restore with encryption and signing on
// against the same with them off, each into a fresh file repository.
func (b *bench) encryption(ctx context.Context) (err error) {
	on := variant{
		backup:  b.rep.row(opEncBackup, "hestami backup push, encryption + signing on", true),
		restore: b.rep.row(opEncRestore, "hestami restore, encryption + signing on", true),
		runner:  b.r,
	}
	off := variant{
		backup:  b.rep.row(opEncBackup, "hestami backup push, encryption + signing off", false),
		restore: b.rep.row(opEncRestore, "hestami restore, encryption + signing off", false),
		runner:  b.r,
	}
	dir := filepath.Join(b.work, "encryption")
	if err := b.mkdir(dir); err != nil {
		return err
	}
	defer b.removeUnlessKept(dir)
	identity, signing := filepath.Join(dir, "identity.key"), filepath.Join(dir, "signing.key")
	recipient, err := b.generateKey(ctx, identity, false)
	if err != nil {
		return fmt.Errorf("hestami keys generate: %w", err)
	}
	signPub, err := b.generateKey(ctx, signing, true)
	if err != nil {
		return fmt.Errorf("hestami keys generate --signing: %w", err)
	}
	keys := fmt.Sprintf(`encryption:
  recipients: [%s]
  identity_file: %s
signing:
  key_file: %s
  public_keys: [%s]
`, strconv.Quote(recipient), strconv.Quote(identity), strconv.Quote(signing), strconv.Quote(signPub))

	// hestami refuses to mix encrypted objects into the cluster's unencrypted WAL
	// repository (and a restore with public keys refuses its unsigned WAL): the
	// encrypted backups need an encrypted, signed WAL repository of their own. For
	// this step the cluster archives into both; both variants run under that.
	encWAL, encWALConfig := filepath.Join(dir, "wal-repo"), filepath.Join(dir, "hestami-wal.yaml")
	if err := b.mkdir(encWAL); err != nil {
		return err
	}
	if err := b.writeVariantConfig(encWALConfig, "file://"+encWAL, "file://"+encWAL, keys); err != nil {
		return err
	}
	b.log.Info("restarting the cluster to archive into an encrypted WAL repository too")
	if err := b.restartCluster(ctx, b.clusterArchiveCommand()+fmt.Sprintf(" && %s --config %s wal push %%p", shellQuote(b.hestami), shellQuote(encWALConfig))); err != nil {
		return err
	}
	defer func() {
		b.log.Info("restarting the cluster with its own archive_command")
		if rerr := b.restartCluster(context.WithoutCancel(ctx), b.clusterArchiveCommand()); rerr != nil {
			err = errors.Join(err, fmt.Errorf("restart the cluster: %w", rerr))
		}
	}()

	variantConfig := func(name, walURL, extra string) func(int) (string, string, error) {
		return func(run int) (string, string, error) {
			repo := filepath.Join(dir, fmt.Sprintf("repo-%s-%d", name, run))
			cfg := filepath.Join(dir, fmt.Sprintf("hestami-%s-%d.yaml", name, run))
			if err := b.mkdir(repo); err != nil {
				return "", "", err
			}
			return cfg, repo, b.writeVariantConfig(cfg, "file://"+repo, walURL, extra)
		}
	}
	on.config = variantConfig("on", "file://"+encWAL, keys)
	off.config = variantConfig("off", "file://"+b.repo, "")
	on.backup.Note = "WAL into an encrypted repository too, for both rows"
	return b.backupRestore(ctx, []variant{on, off})
}

// generateKey runs hestami keys generate [--signing] --output path as the cluster
// user and returns the public key it prints.
func (b *bench) generateKey(ctx context.Context, path string, signing bool) (string, error) {
	args := []string{"keys", "generate", "--output", path}
	if signing {
		args = append(args, "--signing")
	}
	p, err := b.r.run(ctx, b.work, b.hestami, args...)
	if err != nil {
		return "", err
	}
	// Public key: age1... (add it to ...)
	for _, line := range strings.Split(string(p.Stderr), "\n") {
		if rest, ok := strings.CutPrefix(line, "Public key: "); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				return f[0], nil
			}
		}
	}
	return "", fmt.Errorf("no public key in its output: %q", p.Stderr)
}

// s3 times physical backup and restore against an S3 emulator on loopback and
// against a local file repository, each into a fresh repository.
func (b *bench) s3(ctx context.Context) error {
	s3 := variant{
		backup:  b.rep.row(opS3Backup, "hestami backup push → S3 emulator (loopback)", true),
		restore: b.rep.row(opS3Restore, "hestami restore ← S3 emulator (loopback)", true),
	}
	file := variant{
		backup:  b.rep.row(opS3Backup, "hestami backup push → file repository", false),
		restore: b.rep.row(opS3Restore, "hestami restore ← file repository", false),
		runner:  b.r,
	}
	s3.backup.Note = "gofakes3 in memory"
	dir := filepath.Join(b.work, "s3")
	if err := b.mkdir(dir); err != nil {
		return err
	}
	defer b.removeUnlessKept(dir)
	addr, stop, err := b.startEmulator(ctx, dir)
	if err != nil {
		return fmt.Errorf("S3 emulator: %w", err)
	}
	defer stop()
	s3.runner = &runner{user: b.r.user, env: append(slices.Clone(b.r.env),
		"AWS_ACCESS_KEY_ID=hestami-bench", "AWS_SECRET_ACCESS_KEY=hestami-bench-secret", "AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true")}
	s3.config = func(run int) (string, string, error) {
		cfg := filepath.Join(dir, fmt.Sprintf("hestami-s3-%d.yaml", run))
		// gofakes3 takes neither the SDK's aws-chunked uploads with trailing checksums
		// nor returns checksums: checksums only where S3 requires them (as blobtest).
		u := fmt.Sprintf("s3://%s/run-%d?endpoint=http://%s&use_path_style=true&region=us-east-1"+
			"&request_checksum_calculation=when_required&response_checksum_validation=when_required", s3Bucket, run, addr)
		return cfg, "", b.writeVariantConfig(cfg, u, "file://"+b.repo, "")
	}
	file.config = func(run int) (string, string, error) {
		repo := filepath.Join(dir, fmt.Sprintf("repo-file-%d", run))
		cfg := filepath.Join(dir, fmt.Sprintf("hestami-file-%d.yaml", run))
		if err := b.mkdir(repo); err != nil {
			return "", "", err
		}
		return cfg, repo, b.writeVariantConfig(cfg, "file://"+repo, "file://"+b.repo, "")
	}
	return b.backupRestore(ctx, []variant{s3, file})
}

// startEmulator builds blobtest's storage emulator into dir, starts it as an S3
// server on loopback, creates the bucket and returns its address and a function
// that stops it.
func (b *bench) startEmulator(ctx context.Context, dir string) (string, func(), error) {
	bin := filepath.Join(dir, "storage-emulator")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/hestami/hestami/blobtest/internal/emulator")
	if out, err := build.CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("go build the emulator: %v\n%s", err, indent(strings.TrimSpace(string(out))))
	}
	cmd := exec.Command(bin, "-kind", "s3")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		stdin.Close() // it exits when its stdin closes
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Signal(syscall.SIGTERM)
			<-done
		}
	}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				addrc <- strings.TrimSpace(a)
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var addr string
	select {
	case addr = <-addrc:
	case <-time.After(30 * time.Second):
		stop()
		return "", nil, errors.New("it printed no \"listening on ADDR\" within 30s")
	case <-ctx.Done():
		stop()
		return "", nil, context.Cause(ctx)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+addr+"/"+s3Bucket, nil)
	if err == nil {
		var resp *http.Response
		if resp, err = http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("create bucket %s: %s", s3Bucket, resp.Status)
			}
		}
	}
	if err != nil {
		stop()
		return "", nil, err
	}
	b.log.Info("S3 emulator", "addr", addr, "bucket", s3Bucket)
	return addr, stop, nil
}

// removeUnlessKept removes a step's directory unless --keep.
func (b *bench) removeUnlessKept(dir string) {
	if !b.opts.Keep {
		_ = os.RemoveAll(dir)
	}
}
