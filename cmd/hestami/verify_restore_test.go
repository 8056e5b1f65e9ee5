package main_test

import (
	"encoding/json"
	"testing"

	"github.com/hestami/hestami/pgtest"
)

// TestVerifyRestoreTest restores a physical and a logical backup for real with
// backup verify --restore-test, and leaves nothing behind.
func TestVerifyRestoreTest(t *testing.T) {
	t.Parallel()
	a := pgtest.NewArchiving(t, nil)
	pgtest.Exec(t, a.Cluster, "postgres", "CREATE TABLE t AS SELECT generate_series(1, 5000) AS id")
	for _, typ := range []string{"physical", "logical"} {
		if _, errOut, code := runBinary(t, a, "backup", "push", "--type", typ); code != 0 {
			t.Fatalf("backup push --type %s: exit %d\n%s", typ, code, errOut)
		}
	}
	out, errOut, code := runBinary(t, a, "backup", "list", "--json")
	if code != 0 {
		t.Fatalf("backup list: %s", errOut)
	}
	var rows []struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 2 {
		t.Fatalf("backup list --json: %v\n%s", err, out)
	}
	for _, r := range rows {
		out, errOut, code := runBinary(t, a, "backup", "verify", r.ID, "--restore-test", "--json")
		var rep struct {
			OK          bool   `json:"ok"`
			RestoreTest string `json:"restore_test"`
			Recorded    bool   `json:"recorded"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%s: verify --json is not JSON (%v):\n%s\n%s", r.Type, err, out, errOut)
		}
		if code != 0 || !rep.OK || rep.RestoreTest != "ok" || !rep.Recorded {
			t.Fatalf("%s backup verify --restore-test: exit %d, %+v\n%s", r.Type, code, rep, errOut)
		}
	}
	var left int
	pgtest.QueryRow(t, a.Cluster, "postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 'hestami_verify_%'").Scan(&left)
	if left != 0 {
		t.Fatalf("%d scratch databases left behind", left)
	}
}
