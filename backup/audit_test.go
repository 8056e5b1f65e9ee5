package backup_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/backup"
)

func TestAuditChain(t *testing.T) {
	repo, _ := newRepo(t)
	ctx := t.Context()
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := repo.Audit(ctx, backup.AuditEntry{Action: "backup.push", Actor: "ops", Host: "db1", Target: fmt.Sprint(i), Outcome: "ok"}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	entries, problems, err := repo.AuditLog(ctx)
	if err != nil || len(problems) != 0 || len(entries) != 10 {
		t.Fatalf("after 10 concurrent appends: %d entries, problems %v, %v", len(entries), problems, err)
	}
	for i, e := range entries {
		if e.Seq != uint64(i+1) || (i > 0 && e.Prev != entries[i-1].Hash) {
			t.Fatalf("entry %d: %+v", i, e)
		}
	}

	key := func(seq int) string { return fmt.Sprintf("audit/%020d.json.zst", seq) }
	rewrite := func(t *testing.T, seq int, change func(*backup.AuditEntry)) {
		t.Helper()
		b, err := repo.ReadObject(ctx, key(seq))
		if err != nil {
			t.Fatal(err)
		}
		var e backup.AuditEntry
		json.Unmarshal(b, &e)
		change(&e)
		b, _ = json.Marshal(e)
		if _, err := repo.PutObject(ctx, key(seq), bytes.NewReader(b), false, 1); err != nil {
			t.Fatal(err)
		}
	}
	check := func(t *testing.T, want string) {
		t.Helper()
		_, problems, err := repo.AuditLog(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var all []string
		for _, p := range problems {
			all = append(all, fmt.Sprintf("%d: %s", p.Seq, p.Problem))
		}
		if !strings.Contains(strings.Join(all, "\n"), want) {
			t.Fatalf("problems %v, want one saying %q", all, want)
		}
	}
	t.Run("edited entry", func(t *testing.T) {
		rewrite(t, 4, func(e *backup.AuditEntry) { e.Outcome = "failed" })
		check(t, "4: content does not match its hash (edited)")
	})
	t.Run("edited entry with its hash recomputed", func(t *testing.T) {
		rewrite(t, 6, func(e *backup.AuditEntry) {
			e.Actor = "mallory"
			c := *e
			c.Hash = ""
			b, _ := json.Marshal(c)
			sum := sha256Hex(b)
			e.Hash = sum
		})
		check(t, "7: does not chain to the entry before it")
	})
	t.Run("removed entry", func(t *testing.T) {
		if err := repo.Storage.Delete(ctx, key(8)); err != nil {
			t.Fatal(err)
		}
		check(t, "8: entries 8 to 8 are missing (removed)")
	})
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func TestDrillRecords(t *testing.T) {
	repo, _ := newRepo(t)
	ctx := t.Context()
	base := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	for i, ok := range []bool{true, false, true} {
		rec := backup.DrillRecord{Time: base.Add(time.Duration(2-i) * time.Hour), BackupID: fmt.Sprintf("physical-2026120%dT030000Z", i), Type: backup.Physical, OK: ok, RTOSeconds: 12.5}
		if err := repo.RecordDrill(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	got, err := repo.Drills(ctx)
	if err != nil || len(got) != 3 {
		t.Fatalf("Drills = %v, %v", got, err)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Time.Before(got[i-1].Time) {
			t.Fatalf("drills out of order: %v", got)
		}
	}
	if got[1].OK || got[1].BackupID != "physical-20261201T030000Z" {
		t.Fatalf("middle drill = %+v", got[1])
	}
}

// TestAuditSignedAndUnsigned: a repository whose readers trust a signing key takes
// audit entries from hosts without the key (a restore host records its restores),
// chains signed entries after them, and still refuses an entry signed by another key.
func TestAuditSignedAndUnsigned(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	sk, other := signingKey(t), signingKey(t)
	pusher := repoAt(t, dir, withSigner(sk), withVerifier(trust(t, sk)))
	restorer := repoAt(t, dir, withVerifier(trust(t, sk))) // no signing key
	forger := repoAt(t, dir, withSigner(other))

	for i, r := range []*backup.Repository{pusher, restorer, restorer, pusher} {
		if _, err := r.Audit(ctx, backup.AuditEntry{Action: "restore", Actor: "ops", Host: "dr1", Target: fmt.Sprint(i), Outcome: "ok"}); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	entries, problems, err := restorer.AuditLog(ctx)
	if err != nil || len(problems) != 0 || len(entries) != 4 {
		t.Fatalf("AuditLog = %d entries, problems %v, %v", len(entries), problems, err)
	}
	var sigs []string
	for _, e := range entries {
		sigs = append(sigs, e.Signature)
	}
	if want := []string{"verified", "unsigned", "unsigned", "verified"}; strings.Join(sigs, " ") != strings.Join(want, " ") {
		t.Errorf("signatures %v, want %v", sigs, want)
	}

	// Another key's entry is untrusted: reported, and no one can chain onto it.
	if _, err := forger.Audit(ctx, backup.AuditEntry{Action: "restore", Actor: "mallory", Host: "x", Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
	_, problems, err = pusher.AuditLog(ctx)
	if err != nil || len(problems) != 1 || problems[0].Seq != 5 || !strings.Contains(problems[0].Problem, "not among the trusted keys") {
		t.Errorf("after a forged entry: problems %+v, %v; want entry 5 signed by an untrusted key", problems, err)
	}
	if _, err := pusher.Audit(ctx, backup.AuditEntry{Action: "backup.push", Actor: "ops", Host: "db1", Outcome: "ok"}); err == nil {
		t.Error("an entry was chained onto an untrusted one")
	}
}
