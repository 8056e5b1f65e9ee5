package daemon_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/daemon"
	"github.com/hestami/hestami/zstd"
)

// TestVerifyAndDrillOnDemand: VerifyBackup verifies one given backup and records
// the outcome for retention, passing or failing; DrillBackup says what the daemon
// lacks for a drill, and an unknown backup is ErrBackupNotFound.
func TestVerifyAndDrillOnDemand(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := fileStorage(t)
	clk := newClock(time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC))
	repo := &backup.Repository{Storage: st, Codec: zstd.Codec{Level: 1}, Now: clk.Now}
	d, err := daemon.New(daemon.Options{Repo: repo, Leaser: &daemon.Leaser{Storage: st, Host: "db1", PID: 1, Settle: -1, Now: clk.Now}, Host: "db1", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	write := func(id string, corrupt bool) {
		t.Helper()
		sum, err := repo.PutObject(ctx, backup.BackupKey(id, "app.dump"), strings.NewReader("a dump of app"), true, 1)
		if err != nil {
			t.Fatal(err)
		}
		if corrupt {
			sum.SHA256 = strings.Repeat("0", 64)
		}
		m := &backup.Manifest{Format: backup.FormatVersion, ID: id, Type: backup.Logical, StartTime: clk.Now().Add(-time.Hour), StopTime: clk.Now().Add(-time.Hour),
			Databases: []string{"app"}, Files: []backup.File{{Name: "app.dump", Sum: sum, Database: "app"}}}
		if err := repo.WriteManifest(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	write("logical-20260501T020000Z", false)
	write("logical-20260501T030000Z", true)
	for _, c := range []struct {
		id string
		ok bool
	}{{"logical-20260501T020000Z", true}, {"logical-20260501T030000Z", false}} {
		err := d.VerifyBackup(ctx, c.id)
		v, rerr := repo.Verification(ctx, c.id)
		if (err == nil) != c.ok || rerr != nil || v == nil || v.OK != c.ok {
			t.Errorf("VerifyBackup(%s) = %v; recorded %+v (%v); want ok %t", c.id, err, v, rerr, c.ok)
		}
	}
	if err := d.VerifyBackup(ctx, "logical-20990101T000000Z"); !errors.Is(err, backup.ErrBackupNotFound) {
		t.Errorf("VerifyBackup of an unknown backup = %v", err)
	}
	if err := d.DrillBackup(ctx, "logical-20260501T020000Z"); !errors.Is(err, daemon.ErrCannotRun) {
		t.Errorf("DrillBackup without a server = %v, want ErrCannotRun", err)
	}
	if err := d.DrillBackup(ctx, "logical-20990101T000000Z"); !errors.Is(err, backup.ErrBackupNotFound) {
		t.Errorf("DrillBackup of an unknown backup = %v", err)
	}
}
