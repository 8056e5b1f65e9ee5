package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// auditPrefix holds the audit log: one object per entry, named by its sequence
// number, each carrying the hash of the one before.
const auditPrefix = "audit/"

// AuditEntry is one backup-management action.
type AuditEntry struct {
	Seq     uint64            `json:"seq"`
	Time    time.Time         `json:"time"`
	Action  string            `json:"action"` // backup.push, backup.delete, backup.prune, restore, restore.logical, ...
	Actor   string            `json:"actor"`  // OS user (or the signed-in user, for the daemon)
	Host    string            `json:"host"`
	Target  string            `json:"target,omitempty"` // a backup id, a directory, a database
	Outcome string            `json:"outcome"`          // ok, failed, refused
	Details map[string]string `json:"details,omitempty"`
	// Prev is the hash of the previous entry ("" for the first); Hash is this
	// entry's, over all the fields above.
	Prev string `json:"prev"`
	Hash string `json:"hash"`
	// Signature is how the stored entry is signed, found when it is read, not
	// stored nor hashed: "verified" (by a trusted key), "unsigned" (written by a
	// host without a signing key, such as one that only restores), or "not checked"
	// (no trusted keys configured).
	Signature string `json:"signature,omitempty"`
}

func (e *AuditEntry) computeHash() string {
	c := *e
	c.Hash, c.Signature = "", ""
	b, _ := json.Marshal(c)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func auditKey(seq uint64) string {
	return fmt.Sprintf("%s%020d.json%s", auditPrefix, seq, objectSuffix)
}

// Audit appends an entry to the repository's audit log. Concurrent writers are
// safe: each entry is created only if its sequence number is free, and a writer that
// loses the race retries on top of the winner.
func (r *Repository) Audit(ctx context.Context, e AuditEntry) (AuditEntry, error) {
	for attempt := 0; attempt < 20; attempt++ {
		last, err := r.lastAudit(ctx)
		if err != nil {
			return e, err
		}
		e.Seq, e.Prev = 1, ""
		if last != nil {
			e.Seq, e.Prev = last.Seq+1, last.Hash
		}
		if e.Time.IsZero() {
			e.Time = r.now().UTC()
		}
		e.Signature = ""
		e.Hash = e.computeHash()
		b, _ := json.Marshal(e)
		// Plaintext (but signed): every writer reads the last entry to chain to it,
		// and hosts that only push have no identity to decrypt with.
		_, err = r.PutPlainObject(ctx, auditKey(e.Seq), bytes.NewReader(b), true)
		if err == nil {
			r.logger().Info("audit", "action", e.Action, "actor", e.Actor, "host", e.Host, "target", e.Target, "outcome", e.Outcome, "seq", e.Seq)
			return e, nil
		}
		if !errors.Is(err, ErrExist) {
			return e, fmt.Errorf("write audit entry: %w", err)
		}
	}
	return e, errors.New("write audit entry: too many concurrent writers")
}

func (r *Repository) lastAudit(ctx context.Context) (*AuditEntry, error) {
	objs, err := r.Storage.List(ctx, auditPrefix)
	if err != nil {
		return nil, fmt.Errorf("list audit log: %w", err)
	}
	for i := len(objs) - 1; i >= 0; i-- {
		if _, ok := auditSeq(objs[i].Key); !ok {
			continue
		}
		e, err := r.readAudit(ctx, objs[i].Key)
		if err != nil {
			return nil, err
		}
		return e, nil
	}
	return nil, nil
}

func auditSeq(key string) (uint64, bool) {
	name, ok := strings.CutPrefix(key, auditPrefix)
	if !ok {
		return 0, false
	}
	name, ok = strings.CutSuffix(name, ".json"+objectSuffix)
	if !ok || len(name) != 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(name, 10, 64)
	return n, err == nil
}

// readAudit reads one entry. Unsigned entries are accepted (hosts that restore or
// verify have no signing key, and record what they do too): each is still bound
// into the chain by its hash, so it cannot be edited without breaking every later
// link up to the next signed entry. An entry signed by an untrusted key, or whose
// signature does not match, is an error.
func (r *Repository) readAudit(ctx context.Context, key string) (*AuditEntry, error) {
	v, err := r.openVerifying(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read audit entry %s: %w", key, err)
	}
	v.unsignedOK = true
	b, err := io.ReadAll(v)
	v.Close()
	if err != nil {
		return nil, fmt.Errorf("read audit entry %s: %w", key, err)
	}
	var e AuditEntry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, &CorruptError{Key: key, Reason: "not an audit entry: " + err.Error()}
	}
	e.Signature = v.signature
	return &e, nil
}

// AuditProblem is one break in the audit log's chain.
type AuditProblem struct {
	Seq     uint64 `json:"seq"`
	Key     string `json:"key,omitempty"`
	Problem string `json:"problem"`
}

// AuditLog reads the whole audit log in order and checks its chain: every entry's
// hash, every link to the previous entry, and the sequence without gaps. It returns
// the entries it could read and every problem found (an edited, removed or inserted
// entry).
func (r *Repository) AuditLog(ctx context.Context) ([]AuditEntry, []AuditProblem, error) {
	objs, err := r.Storage.List(ctx, auditPrefix)
	if err != nil {
		return nil, nil, fmt.Errorf("list audit log: %w", err)
	}
	var entries []AuditEntry
	var problems []AuditProblem
	var prev *AuditEntry
	want := uint64(1)
	for _, o := range objs {
		seq, ok := auditSeq(o.Key)
		if !ok {
			problems = append(problems, AuditProblem{Key: o.Key, Problem: "unexpected object in the audit log"})
			continue
		}
		if seq != want {
			problems = append(problems, AuditProblem{Seq: want, Problem: fmt.Sprintf("entries %d to %d are missing (removed)", want, seq-1)})
		}
		want = seq + 1
		e, err := r.readAudit(ctx, o.Key)
		if err != nil {
			problems = append(problems, AuditProblem{Seq: seq, Key: o.Key, Problem: err.Error()})
			prev = nil
			continue
		}
		switch {
		case e.Seq != seq:
			problems = append(problems, AuditProblem{Seq: seq, Key: o.Key, Problem: fmt.Sprintf("entry says it is number %d (moved)", e.Seq)})
		case e.computeHash() != e.Hash:
			problems = append(problems, AuditProblem{Seq: seq, Key: o.Key, Problem: "content does not match its hash (edited)"})
		case prev != nil && e.Prev != prev.Hash:
			problems = append(problems, AuditProblem{Seq: seq, Key: o.Key, Problem: "does not chain to the entry before it (an entry was edited, replaced or removed)"})
		case prev == nil && seq == 1 && e.Prev != "":
			problems = append(problems, AuditProblem{Seq: seq, Key: o.Key, Problem: "first entry links to a predecessor (entries before it were removed)"})
		}
		entries = append(entries, *e)
		prev = e
	}
	return entries, problems, nil
}
