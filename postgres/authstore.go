package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hestami/hestami/auth"
)

// AuthStore keeps the auth service's users, identities, sessions, sign-in states
// and audit log in PostgreSQL (the tables of migration 0001_auth).
type AuthStore struct {
	pool *pgxpool.Pool
}

var _ auth.Store = (*AuthStore)(nil)

// NewAuthStore returns a store over pool; the database must be migrated (MigrateUp).
func NewAuthStore(pool *pgxpool.Pool) *AuthStore {
	return &AuthStore{pool: pool}
}

// storeErr maps PostgreSQL's errors to the auth package's: no row is
// auth.ErrNotFound, a unique violation auth.ErrConflict, a foreign key violation
// (a user that does not exist) auth.ErrNotFound.
func storeErr(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, auth.ErrNotFound)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505": // unique_violation
			return fmt.Errorf("%s: %w (%w)", what, auth.ErrConflict, err)
		case "23503": // foreign_key_violation
			return fmt.Errorf("%s: %w (%w)", what, auth.ErrNotFound, err)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// isUUID reports whether s is a UUID in the form the database returns user ids
// in. Other strings name no user, and are answered without asking the database
// (which would reject them as malformed).
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// nullTime is t, or NULL when t is zero.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// textArray is s for a NOT NULL text[] column: pgx sends a nil slice as NULL.
func textArray(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

const userColumns = `id, type, email, email_verified, name, avatar_url, roles, disabled, created_at, updated_at`

func scanUser(row pgx.Row) (*auth.User, error) {
	var u auth.User
	var typ string
	if err := row.Scan(&u.ID, &typ, &u.Email, &u.EmailVerified, &u.Name, &u.AvatarURL, &u.Roles, &u.Disabled, &u.CreatedAt, &u.UpdatedAt); err != nil {
		return nil, err
	}
	u.Type = auth.UserType(typ)
	return &u, nil
}

func collectUsers(rows pgx.Rows) ([]*auth.User, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*auth.User, error) { return scanUser(r) })
}

// CreateUser stores u (its email normalized), assigning ID, CreatedAt and
// UpdatedAt, and links identity to it in the same transaction; if the identity is
// linked already (auth.ErrConflict) no user is created.
func (s *AuthStore) CreateUser(ctx context.Context, u *auth.User, identity *auth.Identity) error {
	email := auth.NormalizeEmail(u.Email)
	var id string
	var created, updated time.Time
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO users (type, email, email_verified, name, avatar_url, roles, disabled)
			VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id, created_at, updated_at`,
			string(u.Type), email, u.EmailVerified, u.Name, u.AvatarURL, textArray(u.Roles), u.Disabled).Scan(&id, &created, &updated)
		if err != nil {
			return err
		}
		if identity == nil {
			return nil
		}
		linked := *identity
		linked.UserID = id
		return insertIdentity(ctx, tx, &linked)
	})
	if err != nil {
		return storeErr("create user", err)
	}
	u.ID, u.Email, u.CreatedAt, u.UpdatedAt = id, email, created, updated
	if identity != nil {
		identity.UserID = id
		if identity.CreatedAt.IsZero() {
			identity.CreatedAt = created
		}
		if identity.LastUsedAt.IsZero() {
			identity.LastUsedAt = created
		}
	}
	return nil
}

// User returns the user with id; auth.ErrNotFound if there is none.
func (s *AuthStore) User(ctx context.Context, id string) (*auth.User, error) {
	if !isUUID(id) {
		return nil, fmt.Errorf("user %q: %w", id, auth.ErrNotFound)
	}
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	if err != nil {
		return nil, storeErr("user "+id, err)
	}
	return u, nil
}

// UsersByEmail returns the users with email (compared normalized), oldest first.
func (s *AuthStore) UsersByEmail(ctx context.Context, email string) ([]*auth.User, error) {
	email = auth.NormalizeEmail(email)
	if email == "" {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+userColumns+` FROM users WHERE email = $1 ORDER BY created_at, id`, email)
	if err != nil {
		return nil, storeErr("users by email", err)
	}
	users, err := collectUsers(rows)
	if err != nil {
		return nil, storeErr("users by email", err)
	}
	return users, nil
}

// where builds a WHERE clause from the filters that are set, so each query the
// planner sees uses only the conditions it needs (and their indexes).
type where struct {
	conds []string
	args  []any
}

// add adds a condition whose one parameter, written $%d (or $%[1]d when used
// twice), is arg.
func (w *where) add(cond string, arg any) {
	w.args = append(w.args, arg)
	w.conds = append(w.conds, fmt.Sprintf(cond, len(w.args)))
}

func (w *where) sql() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// likePattern is a LIKE pattern matching s anywhere.
func likePattern(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(s) + "%"
}

// Users lists users matching f, newest first; Query matches a substring of the
// email or name, case-insensitively.
func (s *AuthStore) Users(ctx context.Context, f auth.UserFilter) ([]*auth.User, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	var w where
	if f.Type != "" {
		w.add("type = $%d", string(f.Type))
	}
	if q := strings.TrimSpace(f.Query); q != "" {
		w.add("(email ILIKE $%[1]d OR name ILIKE $%[1]d)", likePattern(q))
	}
	w.args = append(w.args, limit)
	rows, err := s.pool.Query(ctx, `SELECT `+userColumns+` FROM users`+w.sql()+
		fmt.Sprintf(` ORDER BY created_at DESC, id DESC LIMIT $%d`, len(w.args)), w.args...)
	if err != nil {
		return nil, storeErr("list users", err)
	}
	users, err := collectUsers(rows)
	if err != nil {
		return nil, storeErr("list users", err)
	}
	return users, nil
}

// UpdateUser saves u's Email (normalized), EmailVerified, Name, AvatarURL and
// Disabled, and sets UpdatedAt; auth.ErrNotFound if there is no such user. It
// publishes the user's invalidation (see ListenInvalidations).
func (s *AuthStore) UpdateUser(ctx context.Context, u *auth.User) error {
	if !isUUID(u.ID) {
		return fmt.Errorf("update user %q: %w", u.ID, auth.ErrNotFound)
	}
	email := auth.NormalizeEmail(u.Email)
	var updated time.Time
	err := s.pool.QueryRow(ctx, `WITH u AS (UPDATE users SET email = $2, email_verified = $3, name = $4, avatar_url = $5, disabled = $6,
		updated_at = greatest(now(), updated_at) WHERE id = $1 RETURNING id, updated_at)
		SELECT updated_at, `+notifyUser+` FROM u`,
		u.ID, email, u.EmailVerified, u.Name, u.AvatarURL, u.Disabled).Scan(&updated, nil)
	if err != nil {
		return storeErr("update user "+u.ID, err)
	}
	u.Email, u.UpdatedAt = email, updated
	return nil
}

// SetRoles replaces the user's roles; auth.ErrNotFound if there is no such user.
// It publishes the user's invalidation.
func (s *AuthStore) SetRoles(ctx context.Context, userID string, roles []string) error {
	if !isUUID(userID) {
		return fmt.Errorf("set roles of %q: %w", userID, auth.ErrNotFound)
	}
	tag, err := s.pool.Exec(ctx, `WITH u AS (UPDATE users SET roles = $2, updated_at = greatest(now(), updated_at) WHERE id = $1 RETURNING id)
		SELECT `+notifyUser+` FROM u`, userID, textArray(roles))
	if err != nil {
		return storeErr("set roles of "+userID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("set roles of %s: %w", userID, auth.ErrNotFound)
	}
	return nil
}

const identityColumns = `user_id, provider, subject, email, email_verified, name, avatar_url, scopes, created_at, last_used_at`

func scanIdentity(row pgx.Row) (*auth.Identity, error) {
	var id auth.Identity
	if err := row.Scan(&id.UserID, &id.Provider, &id.Subject, &id.Email, &id.EmailVerified, &id.Name, &id.AvatarURL, &id.Scopes, &id.CreatedAt, &id.LastUsedAt); err != nil {
		return nil, err
	}
	return &id, nil
}

// IdentityBySubject returns the identity; auth.ErrNotFound if none is linked.
func (s *AuthStore) IdentityBySubject(ctx context.Context, provider, subject string) (*auth.Identity, error) {
	id, err := scanIdentity(s.pool.QueryRow(ctx, `SELECT `+identityColumns+` FROM identities WHERE provider = $1 AND subject = $2`, provider, subject))
	if err != nil {
		return nil, storeErr("identity "+provider, err)
	}
	return id, nil
}

// Identities returns the user's identities, oldest first.
func (s *AuthStore) Identities(ctx context.Context, userID string) ([]*auth.Identity, error) {
	if !isUUID(userID) {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+identityColumns+` FROM identities WHERE user_id = $1 ORDER BY created_at, provider, subject`, userID)
	if err != nil {
		return nil, storeErr("identities", err)
	}
	ids, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*auth.Identity, error) { return scanIdentity(r) })
	if err != nil {
		return nil, storeErr("identities", err)
	}
	return ids, nil
}

// execer is a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func insertIdentity(ctx context.Context, db execer, id *auth.Identity) error {
	_, err := db.Exec(ctx, `INSERT INTO identities (user_id, provider, subject, email, email_verified, name, avatar_url, scopes, created_at, last_used_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, coalesce($9, now()), coalesce($10, $9, now()))`,
		id.UserID, id.Provider, id.Subject, id.Email, id.EmailVerified, id.Name, id.AvatarURL, textArray(id.Scopes),
		nullTime(id.CreatedAt), nullTime(id.LastUsedAt))
	return err
}

// AddIdentity links id to id.UserID; auth.ErrConflict if (Provider, Subject) is
// linked to any user already, auth.ErrNotFound if there is no such user.
func (s *AuthStore) AddIdentity(ctx context.Context, id *auth.Identity) error {
	if !isUUID(id.UserID) {
		return fmt.Errorf("link identity to %q: %w", id.UserID, auth.ErrNotFound)
	}
	return storeErr("link "+id.Provider+" identity", insertIdentity(ctx, s.pool, id))
}

// UpdateIdentity saves the identity's profile fields, Scopes and LastUsedAt;
// auth.ErrNotFound if it is not linked.
func (s *AuthStore) UpdateIdentity(ctx context.Context, id *auth.Identity) error {
	tag, err := s.pool.Exec(ctx, `UPDATE identities SET email = $3, email_verified = $4, name = $5, avatar_url = $6, scopes = $7,
		last_used_at = coalesce($8, last_used_at) WHERE provider = $1 AND subject = $2`,
		id.Provider, id.Subject, id.Email, id.EmailVerified, id.Name, id.AvatarURL, textArray(id.Scopes), nullTime(id.LastUsedAt))
	if err != nil {
		return storeErr("update "+id.Provider+" identity", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("update %s identity: %w", id.Provider, auth.ErrNotFound)
	}
	return nil
}

// RemoveIdentity unlinks (provider, subject) from userID, refusing with
// auth.ErrConflict to remove the user's last identity; auth.ErrNotFound if the
// user has no such identity. It locks the user's row first, so that concurrent
// removals of a user's identities are counted one after the other.
func (s *AuthStore) RemoveIdentity(ctx context.Context, userID, provider, subject string) error {
	what := "unlink " + provider + " identity"
	if !isUUID(userID) {
		return fmt.Errorf("%s: %w", what, auth.ErrNotFound)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, userID).Scan(&one); err != nil {
			return err
		}
		var total int
		var linked bool
		if err := tx.QueryRow(ctx, `SELECT count(*), coalesce(bool_or(provider = $2 AND subject = $3), false) FROM identities WHERE user_id = $1`,
			userID, provider, subject).Scan(&total, &linked); err != nil {
			return err
		}
		switch {
		case !linked:
			return pgx.ErrNoRows
		case total <= 1:
			return fmt.Errorf("the user's last identity: %w", auth.ErrConflict)
		}
		_, err := tx.Exec(ctx, `DELETE FROM identities WHERE user_id = $1 AND provider = $2 AND subject = $3`, userID, provider, subject)
		return err
	})
	return storeErr(what, err)
}

const sessionColumns = `id, user_id, created_at, last_seen_at, expires_at, idle_timeout, ip, user_agent, methods, auth_time, revoked_at, mfa_at`

func scanSession(row pgx.Row) (*auth.Session, error) {
	var s auth.Session
	var revoked, mfa *time.Time
	if err := row.Scan(&s.ID, &s.UserID, &s.CreatedAt, &s.LastSeenAt, &s.ExpiresAt, &s.IdleTimeout, &s.IP, &s.UserAgent, &s.Methods, &s.AuthTime, &revoked, &mfa); err != nil {
		return nil, err
	}
	if revoked != nil {
		s.RevokedAt = *revoked
	}
	if mfa != nil {
		s.MFAAt = *mfa
	}
	return &s, nil
}

// CreateSession stores sess; auth.ErrNotFound if its user does not exist,
// auth.ErrConflict if its ID is taken.
func (s *AuthStore) CreateSession(ctx context.Context, sess *auth.Session) error {
	if !isUUID(sess.UserID) {
		return fmt.Errorf("create session for %q: %w", sess.UserID, auth.ErrNotFound)
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO sessions (`+sessionColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		sess.ID, sess.UserID, sess.CreatedAt, sess.LastSeenAt, sess.ExpiresAt, sess.IdleTimeout, sess.IP, sess.UserAgent,
		textArray(sess.Methods), sess.AuthTime, nullTime(sess.RevokedAt), nullTime(sess.MFAAt))
	return storeErr("create session", err)
}

// Session returns the session with id, revoked or not; auth.ErrNotFound if none.
func (s *AuthStore) Session(ctx context.Context, id string) (*auth.Session, error) {
	sess, err := scanSession(s.pool.QueryRow(ctx, `SELECT `+sessionColumns+` FROM sessions WHERE id = $1`, id))
	if err != nil {
		return nil, storeErr("session", err)
	}
	return sess, nil
}

// SessionUser returns the session with id and its user in one query;
// auth.ErrNotFound if there is no session.
func (s *AuthStore) SessionUser(ctx context.Context, id string) (*auth.Session, *auth.User, error) {
	var sess auth.Session
	var u auth.User
	var revoked, mfa *time.Time
	var typ string
	err := s.pool.QueryRow(ctx, `SELECT s.id, s.user_id, s.created_at, s.last_seen_at, s.expires_at, s.idle_timeout, s.ip, s.user_agent,
			s.methods, s.auth_time, s.revoked_at, s.mfa_at,
			u.id, u.type, u.email, u.email_verified, u.name, u.avatar_url, u.roles, u.disabled, u.created_at, u.updated_at
		FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1`, id).Scan(
		&sess.ID, &sess.UserID, &sess.CreatedAt, &sess.LastSeenAt, &sess.ExpiresAt, &sess.IdleTimeout, &sess.IP, &sess.UserAgent,
		&sess.Methods, &sess.AuthTime, &revoked, &mfa,
		&u.ID, &typ, &u.Email, &u.EmailVerified, &u.Name, &u.AvatarURL, &u.Roles, &u.Disabled, &u.CreatedAt, &u.UpdatedAt)
	if err != nil {
		return nil, nil, storeErr("session", err)
	}
	if revoked != nil {
		sess.RevokedAt = *revoked
	}
	if mfa != nil {
		sess.MFAAt = *mfa
	}
	u.Type = auth.UserType(typ)
	return &sess, &u, nil
}

// TouchSession sets the session's LastSeenAt (and IP, if not empty);
// auth.ErrNotFound if there is no such session.
func (s *AuthStore) TouchSession(ctx context.Context, id string, at time.Time, ip string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE sessions SET last_seen_at = $2, ip = CASE WHEN $3 = '' THEN ip ELSE $3 END WHERE id = $1`, id, at, ip)
	if err != nil {
		return storeErr("touch session", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("touch session: %w", auth.ErrNotFound)
	}
	return nil
}

// Sessions returns the user's sessions that are not revoked and end (absolutely or
// by idling) after now, newest first.
func (s *AuthStore) Sessions(ctx context.Context, userID string, now time.Time) ([]*auth.Session, error) {
	if !isUUID(userID) {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+sessionColumns+` FROM sessions
		WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 AND last_seen_at + idle_timeout > $2
		ORDER BY created_at DESC, id`, userID, now)
	if err != nil {
		return nil, storeErr("list sessions", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*auth.Session, error) { return scanSession(r) })
	if err != nil {
		return nil, storeErr("list sessions", err)
	}
	return out, nil
}

// RevokeSession marks the user's session id revoked at (a session revoked
// already keeps its first revocation time); auth.ErrNotFound if the user has no
// such session. It publishes the session's invalidation.
func (s *AuthStore) RevokeSession(ctx context.Context, userID, id string, at time.Time) error {
	if !isUUID(userID) {
		return fmt.Errorf("revoke session: %w", auth.ErrNotFound)
	}
	tag, err := s.pool.Exec(ctx, `WITH r AS (UPDATE sessions SET revoked_at = coalesce(revoked_at, $3) WHERE id = $2 AND user_id = $1 RETURNING id)
		SELECT `+notifySession+` FROM r`, userID, id, at)
	if err != nil {
		return storeErr("revoke session", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("revoke session: %w", auth.ErrNotFound)
	}
	return nil
}

// RevokeSessions marks every session of the user that is not revoked yet revoked
// at, except keep, and returns how many it revoked. It publishes each one's
// invalidation.
func (s *AuthStore) RevokeSessions(ctx context.Context, userID, keep string, at time.Time) (int, error) {
	if !isUUID(userID) {
		return 0, nil
	}
	tag, err := s.pool.Exec(ctx, `WITH r AS (UPDATE sessions SET revoked_at = $3 WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL RETURNING id)
		SELECT `+notifySession+` FROM r`, userID, keep, at)
	if err != nil {
		return 0, storeErr("revoke sessions", err)
	}
	return int(tag.RowsAffected()), nil
}

// DeleteExpiredSessions removes the sessions that ended before before: past their
// absolute end, idle for longer than their idle timeout, or revoked.
func (s *AuthStore) DeleteExpiredSessions(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM sessions
		WHERE expires_at < $1 OR last_seen_at + idle_timeout < $1 OR revoked_at < $1`, before)
	if err != nil {
		return 0, storeErr("delete expired sessions", err)
	}
	return int(tag.RowsAffected()), nil
}

// PutLoginState stores ls under ls.ID; auth.ErrConflict if the ID is taken,
// auth.ErrNotFound if ls.UserID names no user.
func (s *AuthStore) PutLoginState(ctx context.Context, ls *auth.LoginState) error {
	var userID *string
	if ls.UserID != "" {
		if !isUUID(ls.UserID) {
			return fmt.Errorf("store sign-in state for %q: %w", ls.UserID, auth.ErrNotFound)
		}
		userID = &ls.UserID
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO login_states (id, provider, intent, binding, nonce, verifier, return_to, user_type, user_id, scopes, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		ls.ID, ls.Provider, string(ls.Intent), ls.Binding, ls.Nonce, ls.Verifier, ls.ReturnTo, string(ls.UserType), userID,
		textArray(ls.Scopes), ls.CreatedAt, ls.ExpiresAt)
	return storeErr("store sign-in state", err)
}

// TakeLoginState deletes the state with id and returns it, in one statement: of
// concurrent takers exactly one gets it. auth.ErrNotFound if there is none.
func (s *AuthStore) TakeLoginState(ctx context.Context, id string) (*auth.LoginState, error) {
	var ls auth.LoginState
	var intent, userType string
	var userID *string
	err := s.pool.QueryRow(ctx, `DELETE FROM login_states WHERE id = $1
		RETURNING id, provider, intent, binding, nonce, verifier, return_to, user_type, user_id, scopes, created_at, expires_at`, id).
		Scan(&ls.ID, &ls.Provider, &intent, &ls.Binding, &ls.Nonce, &ls.Verifier, &ls.ReturnTo, &userType, &userID, &ls.Scopes, &ls.CreatedAt, &ls.ExpiresAt)
	if err != nil {
		return nil, storeErr("take sign-in state", err)
	}
	ls.Intent, ls.UserType = auth.Intent(intent), auth.UserType(userType)
	if userID != nil {
		ls.UserID = *userID
	}
	return &ls, nil
}

// DeleteExpiredLoginStates removes states that expired before before.
func (s *AuthStore) DeleteExpiredLoginStates(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM login_states WHERE expires_at < $1`, before)
	if err != nil {
		return 0, storeErr("delete expired sign-in states", err)
	}
	return int(tag.RowsAffected()), nil
}

// AppendAudit records e, assigning e.ID (and e.Time, if zero).
func (s *AuthStore) AppendAudit(ctx context.Context, e *auth.AuditEvent) error {
	err := s.pool.QueryRow(ctx, `INSERT INTO audit_events (time, action, outcome, actor_id, subject_id, provider, ip, user_agent, detail)
		VALUES (coalesce($1, now()), $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id, time`,
		nullTime(e.Time), e.Action, e.Outcome, e.ActorID, e.SubjectID, e.Provider, e.IP, e.UserAgent, e.Detail).Scan(&e.ID, &e.Time)
	return storeErr("append audit event", err)
}

// AuditEvents returns events matching f, newest first.
func (s *AuthStore) AuditEvents(ctx context.Context, f auth.AuditFilter) ([]*auth.AuditEvent, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	var w where
	if f.UserID != "" {
		w.add("(actor_id = $%[1]d OR subject_id = $%[1]d)", f.UserID)
	}
	if f.Action != "" {
		w.add("action = $%d", f.Action)
	}
	if !f.Since.IsZero() {
		w.add("time >= $%d", f.Since)
	}
	w.args = append(w.args, limit)
	rows, err := s.pool.Query(ctx, `SELECT id, time, action, outcome, actor_id, subject_id, provider, ip, user_agent, detail FROM audit_events`+
		w.sql()+fmt.Sprintf(` ORDER BY time DESC, id DESC LIMIT $%d`, len(w.args)), w.args...)
	if err != nil {
		return nil, storeErr("read audit log", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*auth.AuditEvent, error) {
		var e auth.AuditEvent
		err := r.Scan(&e.ID, &e.Time, &e.Action, &e.Outcome, &e.ActorID, &e.SubjectID, &e.Provider, &e.IP, &e.UserAgent, &e.Detail)
		return &e, err
	})
	if err != nil {
		return nil, storeErr("read audit log", err)
	}
	return out, nil
}
