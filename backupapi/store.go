package backupapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hestami/hestami/backup"
)

// restoresPrefix holds the restore requests in the repository, one folder per
// request: restores/<id>/request.json.zst, then decision, run and outcome objects
// as it goes on. Each object is written once, create-if-absent, which object stores
// and the file storage do atomically: of two staff members deciding at the same
// moment exactly one decision is stored, and of two daemons starting an approved
// restore exactly one runs it. No object is ever rewritten, so the folder is the
// request's history.
const restoresPrefix = "restores/"

// The objects of a request's folder.
const (
	requestObject  = "request"
	decisionObject = "decision"
	runObject      = "run"
	outcomeObject  = "outcome"
)

// Restore targets: where a restore writes.
const (
	// TargetScratch is a new data directory or a new database, for inspection or
	// to copy data back by hand: one person may do it.
	TargetScratch = "scratch"
	// TargetProduction is the configured production restore directory (physical)
	// or the production database (logical): it needs a second person's approval.
	TargetProduction = "production"
)

// Request statuses.
const (
	StatusPending   = "pending"   // waiting for a second staff member's approval
	StatusApproved  = "approved"  // approved (or needing no approval), not started yet
	StatusRejected  = "rejected"  // rejected, or withdrawn by its requester
	StatusExpired   = "expired"   // nobody approved it in time
	StatusRunning   = "running"   // a daemon is restoring
	StatusSucceeded = "succeeded" // restored: see the outcome
	StatusFailed    = "failed"    // the restore failed or was interrupted: see the outcome
)

// Person is a staff member as the restore requests record them.
type Person struct {
	UserID    string `json:"user_id"`
	Email     string `json:"email,omitempty"`
	Name      string `json:"name,omitempty"`
	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
}

// Recovery is a physical restore's recovery target; empty: the end of the archived
// WAL (latest). At most one of Time, LSN, XID and Name is set.
type Recovery struct {
	Time *time.Time `json:"time,omitempty"`
	LSN  string     `json:"lsn,omitempty"`
	XID  uint64     `json:"xid,omitempty"`
	Name string     `json:"name,omitempty"`
	// Action is what the server does at the target: pause (PostgreSQL's default),
	// promote or shutdown.
	Action string `json:"action,omitempty"`
	// Exclusive stops just before the target instead of just after it.
	Exclusive bool `json:"exclusive,omitempty"`
}

// Target returns r as the backup package's recovery target, checked.
func (r *Recovery) Target() (backup.Target, error) {
	var t backup.Target
	if r == nil {
		return t, nil
	}
	t.Action, t.Exclusive = r.Action, r.Exclusive
	n := 0
	if r.Time != nil {
		n++
		t.Kind, t.Time = backup.TargetTime, *r.Time
	}
	if r.LSN != "" {
		n++
		lsn, err := backup.ParseLSN(r.LSN)
		if err != nil {
			return t, fmt.Errorf("recovery.lsn: %w", err)
		}
		t.Kind, t.LSN = backup.TargetLSN, lsn
	}
	if r.XID != 0 {
		n++
		t.Kind, t.XID = backup.TargetXID, r.XID
	}
	if r.Name != "" {
		n++
		t.Kind, t.Name = backup.TargetName, r.Name
	}
	if n > 1 {
		return t, errors.New("give at most one of recovery.time, recovery.lsn, recovery.xid and recovery.name")
	}
	switch r.Action {
	case "", backup.ActionPause, backup.ActionPromote, backup.ActionShutdown:
	default:
		return t, fmt.Errorf("recovery.action %q: want pause, promote or shutdown", r.Action)
	}
	if t.Kind == backup.TargetLatest && r.Action != "" {
		return t, errors.New("recovery.action needs a recovery target: without one, recovery replays all archived WAL and the server promotes")
	}
	return t, t.Validate()
}

// RestoreRequest is a request to restore a backup, as its requester made it.
type RestoreRequest struct {
	ID     string      `json:"id"`
	Backup string      `json:"backup"`
	Type   backup.Type `json:"type"`
	// Target is TargetScratch or TargetProduction.
	Target string `json:"target"`
	// Database is, for a logical backup, the database of the backup to restore.
	Database string `json:"database,omitempty"`
	// Into is where it goes: for a logical scratch restore the new database; set
	// by the daemon for the others (a directory, the production database).
	Into string `json:"into,omitempty"`
	// Recovery is a physical restore's recovery target (nil: latest).
	Recovery *Recovery `json:"recovery,omitempty"`
	// Reason is the requester's explanation, for the approver and the audit log.
	Reason      string    `json:"reason,omitempty"`
	RequestedBy Person    `json:"requested_by"`
	Created     time.Time `json:"created"`
	// TwoPerson says a second staff member must approve it (production).
	TwoPerson bool `json:"two_person"`
	// Expires is when an unapproved request lapses (two-person requests only).
	Expires time.Time `json:"expires,omitzero"`
}

// Decision is a second staff member's approval or rejection (or the requester's
// withdrawal) of a request.
type Decision struct {
	Approved bool      `json:"approved"`
	By       Person    `json:"by"`
	Time     time.Time `json:"time"`
	Reason   string    `json:"reason,omitempty"`
}

// Run says which daemon runs (or ran) a restore.
type Run struct {
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
}

// Outcome is how a restore ended.
type Outcome struct {
	OK       bool      `json:"ok"`
	Finished time.Time `json:"finished"`
	// Error says why it failed (empty when OK).
	Error string `json:"error,omitempty"`
	// Result is what the restore produced (when OK).
	Result *Result `json:"result,omitempty"`
}

// Result is what a finished restore produced and what to do with it.
type Result struct {
	// Location is the data directory or the database restored into.
	Location string `json:"location"`
	// Checks are the verifications it passed ("checksums of 12 files", ...).
	Checks []string `json:"checks,omitempty"`
	// Next is what the operator does next (start the server, switch over...).
	Next string `json:"next,omitempty"`
}

// RestoreState is a request and everything that happened to it.
type RestoreState struct {
	Request  RestoreRequest
	Decision *Decision
	Run      *Run
	Outcome  *Outcome
}

// Status returns the state's status at now.
func (s *RestoreState) Status(now time.Time) string {
	switch {
	case s.Outcome != nil && s.Outcome.OK:
		return StatusSucceeded
	case s.Outcome != nil:
		return StatusFailed
	case s.Run != nil:
		return StatusRunning
	case s.Decision != nil && !s.Decision.Approved:
		return StatusRejected
	case s.Decision != nil || !s.Request.TwoPerson:
		return StatusApproved
	case !now.Before(s.Request.Expires):
		return StatusExpired
	}
	return StatusPending
}

// ErrExists is returned by RequestStore methods when the object they create exists
// already: the request was decided, or the restore started, by someone else first.
var ErrExists = errors.New("already recorded")

// ErrNoRequest is returned for an unknown restore request.
var ErrNoRequest = errors.New("no such restore request")

// RequestStore keeps restore requests in the repository, so that every daemon
// pointed at it sees them. The objects are signed like every other object when the
// repository has a signing key, and never encrypted (like the audit log: a daemon
// that only pushes has no identity to decrypt with).
type RequestStore struct {
	Repo *backup.Repository
}

// NewRequestID returns a new request id: the time, then random letters, so ids sort
// by creation.
func NewRequestID(now time.Time) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return "r" + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

// validRequestID accepts ids NewRequestID makes (and nothing that could escape the
// request's folder).
func validRequestID(id string) bool {
	if len(id) < 2 || len(id) > 64 || id[0] != 'r' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func objectKey(id, name string) string { return restoresPrefix + id + "/" + name + ".json.zst" }

func (s *RequestStore) put(ctx context.Context, id, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = s.Repo.PutPlainObject(ctx, objectKey(id, name), bytes.NewReader(b), true)
	if errors.Is(err, backup.ErrExist) {
		return fmt.Errorf("%s of restore request %s: %w", name, id, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("store the %s of restore request %s: %w", name, id, err)
	}
	return nil
}

// Create stores a new request; ErrExists if its id is taken.
func (s *RequestStore) Create(ctx context.Context, r *RestoreRequest) error {
	if !validRequestID(r.ID) {
		return fmt.Errorf("invalid restore request id %q", r.ID)
	}
	return s.put(ctx, r.ID, requestObject, r)
}

// Decide records the decision on request id; ErrExists if it was decided already.
func (s *RequestStore) Decide(ctx context.Context, id string, d *Decision) error {
	return s.put(ctx, id, decisionObject, d)
}

// Claim records that this daemon runs request id; ErrExists if one does already.
func (s *RequestStore) Claim(ctx context.Context, id string, r *Run) error {
	return s.put(ctx, id, runObject, r)
}

// Finish records how the restore of request id ended; ErrExists if it was recorded
// already.
func (s *RequestStore) Finish(ctx context.Context, id string, o *Outcome) error {
	return s.put(ctx, id, outcomeObject, o)
}

// Get returns request id and what happened to it; ErrNoRequest if there is none.
func (s *RequestStore) Get(ctx context.Context, id string) (*RestoreState, error) {
	if !validRequestID(id) {
		return nil, fmt.Errorf("%w: %q", ErrNoRequest, id)
	}
	objs, err := s.Repo.Storage.List(ctx, restoresPrefix+id+"/")
	if err != nil {
		return nil, fmt.Errorf("list restore request %s: %w", id, err)
	}
	return s.read(ctx, id, objs)
}

func (s *RequestStore) read(ctx context.Context, id string, objs []backup.ObjectInfo) (*RestoreState, error) {
	st := &RestoreState{}
	found := false
	for _, o := range objs {
		name := strings.TrimSuffix(strings.TrimPrefix(o.Key, restoresPrefix+id+"/"), ".json.zst")
		var dst any
		switch name {
		case requestObject:
			dst, found = &st.Request, true
		case decisionObject:
			st.Decision = &Decision{}
			dst = st.Decision
		case runObject:
			st.Run = &Run{}
			dst = st.Run
		case outcomeObject:
			st.Outcome = &Outcome{}
			dst = st.Outcome
		default:
			continue
		}
		b, err := s.Repo.ReadObject(ctx, o.Key)
		if err != nil {
			return nil, fmt.Errorf("read restore request %s: %w", id, err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			return nil, fmt.Errorf("read restore request %s: %s is not what it should be: %w", id, o.Key, err)
		}
	}
	if !found || st.Request.ID != id {
		return nil, fmt.Errorf("%w: %q", ErrNoRequest, id)
	}
	return st, nil
}

// List returns the newest limit requests (0: 100), newest first.
func (s *RequestStore) List(ctx context.Context, limit int) ([]*RestoreState, error) {
	if limit <= 0 {
		limit = 100
	}
	objs, err := s.Repo.Storage.List(ctx, restoresPrefix)
	if err != nil {
		return nil, fmt.Errorf("list restore requests: %w", err)
	}
	byID := map[string][]backup.ObjectInfo{}
	var ids []string
	for _, o := range objs {
		id, _, ok := strings.Cut(strings.TrimPrefix(o.Key, restoresPrefix), "/")
		if !ok || !validRequestID(id) {
			continue
		}
		if _, seen := byID[id]; !seen {
			ids = append(ids, id)
		}
		byID[id] = append(byID[id], o)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(ids)))
	out := make([]*RestoreState, 0, min(limit, len(ids)))
	for _, id := range ids {
		if len(out) == limit {
			break
		}
		st, err := s.read(ctx, id, byID[id])
		if errors.Is(err, ErrNoRequest) {
			continue // a folder whose request object is not (yet) there
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}
