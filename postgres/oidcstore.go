package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/oidcprovider"
)

// OIDCStore keeps the OpenID Connect provider's authorization requests, grants,
// tokens and signing keys in PostgreSQL (the tables of migration 0002_oidc).
type OIDCStore struct {
	pool *pgxpool.Pool
}

var _ oidcprovider.Store = (*OIDCStore)(nil)

// NewOIDCStore returns a store over pool; the database must be migrated (MigrateUp).
func NewOIDCStore(pool *pgxpool.Pool) *OIDCStore {
	return &OIDCStore{pool: pool}
}

// optTime is t, or NULL when t is zero.
func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// fromOpt is *t, or the zero time for NULL.
func fromOpt(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// strs is s for a NOT NULL text[] column.
func strs(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

const authRequestColumns = `id, client_id, redirect_uri, scopes, state, nonce, response_type, response_mode,
	code_challenge, code_challenge_method, prompt, max_age, login_hint, binding, created_at, expires_at,
	COALESCE(user_id::text, ''), session_id, auth_time, amr, completed_at, completion, COALESCE(code_hash, ''), code_expires_at, code_used_at`

func scanAuthRequest(row pgx.Row) (*oidcprovider.AuthRequest, error) {
	var r oidcprovider.AuthRequest
	var authTime, completed, codeExp, codeUsed *time.Time
	err := row.Scan(&r.ID, &r.ClientID, &r.RedirectURI, &r.Scopes, &r.State, &r.Nonce, &r.ResponseType, &r.ResponseMode,
		&r.CodeChallenge, &r.CodeChallengeMethod, &r.Prompt, &r.MaxAge, &r.LoginHint, &r.Binding, &r.CreatedAt, &r.ExpiresAt,
		&r.UserID, &r.SessionID, &authTime, &r.AMR, &completed, &r.Completion, &r.CodeHash, &codeExp, &codeUsed)
	if err != nil {
		return nil, err
	}
	r.AuthTime, r.CompletedAt, r.CodeExpiresAt, r.CodeUsedAt = fromOpt(authTime), fromOpt(completed), fromOpt(codeExp), fromOpt(codeUsed)
	return &r, nil
}

// CreateAuthRequest stores r.
func (s *OIDCStore) CreateAuthRequest(ctx context.Context, r *oidcprovider.AuthRequest) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO oidc_auth_requests (id, client_id, redirect_uri, scopes, state, nonce,
		response_type, response_mode, code_challenge, code_challenge_method, prompt, max_age, login_hint, binding, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		r.ID, r.ClientID, r.RedirectURI, strs(r.Scopes), r.State, r.Nonce, r.ResponseType, r.ResponseMode,
		r.CodeChallenge, r.CodeChallengeMethod, strs(r.Prompt), r.MaxAge, r.LoginHint, r.Binding, r.CreatedAt, r.ExpiresAt)
	return storeErr("create auth request", err)
}

// AuthRequest returns the request with id; auth.ErrNotFound if there is none.
func (s *OIDCStore) AuthRequest(ctx context.Context, id string) (*oidcprovider.AuthRequest, error) {
	r, err := scanAuthRequest(s.pool.QueryRow(ctx, `SELECT `+authRequestColumns+` FROM oidc_auth_requests WHERE id = $1`, id))
	return r, storeErr("load auth request", err)
}

// CompleteAuthRequest records who signed in, once, before the request expires;
// auth.ErrNotFound otherwise. An empty r.UserID completes it for nobody (the
// request was refused).
func (s *OIDCStore) CompleteAuthRequest(ctx context.Context, r *oidcprovider.AuthRequest) error {
	if r.UserID != "" && !isUUID(r.UserID) {
		return fmt.Errorf("complete auth request: no user %q: %w", r.UserID, auth.ErrNotFound)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE oidc_auth_requests
		SET user_id = NULLIF($2::text, '')::uuid, session_id = $3, auth_time = $4, amr = $5, completed_at = $6, completion = $7
		WHERE id = $1 AND completed_at IS NULL AND expires_at > $6`,
		r.ID, r.UserID, r.SessionID, optTime(r.AuthTime), strs(r.AMR), r.CompletedAt, r.Completion)
	if err != nil {
		return storeErr("complete auth request", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("complete auth request: %w (unknown, expired or completed already)", auth.ErrNotFound)
	}
	return nil
}

// SaveAuthCode records the code of a completed request, once.
func (s *OIDCStore) SaveAuthCode(ctx context.Context, id, codeHash string, expiresAt time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE oidc_auth_requests SET code_hash = $2, code_expires_at = $3
		WHERE id = $1 AND completed_at IS NOT NULL AND code_hash IS NULL`, id, codeHash, expiresAt)
	if err != nil {
		return storeErr("save code", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var hasCode bool
	err = s.pool.QueryRow(ctx, `SELECT code_hash IS NOT NULL FROM oidc_auth_requests WHERE id = $1 AND completed_at IS NOT NULL`, id).Scan(&hasCode)
	if err != nil {
		return storeErr("save code", err)
	}
	return fmt.Errorf("save code: %w (the request has a code already)", auth.ErrConflict)
}

// AuthRequestByCode returns the request whose code has codeHash;
// auth.ErrNotFound if none.
func (s *OIDCStore) AuthRequestByCode(ctx context.Context, codeHash string) (*oidcprovider.AuthRequest, error) {
	r, err := scanAuthRequest(s.pool.QueryRow(ctx, `SELECT `+authRequestColumns+` FROM oidc_auth_requests WHERE code_hash = $1`, codeHash))
	return r, storeErr("find code", err)
}

const grantColumns = `id, client_id, user_id::text, session_id, scopes, auth_time, amr, created_at, expires_at, revoked_at`

func scanGrant(row pgx.Row) (*oidcprovider.Grant, error) {
	var g oidcprovider.Grant
	var revoked *time.Time
	if err := row.Scan(&g.ID, &g.ClientID, &g.UserID, &g.SessionID, &g.Scopes, &g.AuthTime, &g.AMR, &g.CreatedAt, &g.ExpiresAt, &revoked); err != nil {
		return nil, err
	}
	g.RevokedAt = fromOpt(revoked)
	return &g, nil
}

func insertGrant(ctx context.Context, tx pgx.Tx, g *oidcprovider.Grant) error {
	if !isUUID(g.UserID) {
		return fmt.Errorf("no user %q: %w", g.UserID, auth.ErrNotFound)
	}
	_, err := tx.Exec(ctx, `INSERT INTO oidc_grants (id, client_id, user_id, session_id, scopes, auth_time, amr, created_at, expires_at, revoked_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		g.ID, g.ClientID, g.UserID, g.SessionID, strs(g.Scopes), g.AuthTime, strs(g.AMR), g.CreatedAt, g.ExpiresAt, optTime(g.RevokedAt))
	return err
}

// Grant returns the grant with id; auth.ErrNotFound if none.
func (s *OIDCStore) Grant(ctx context.Context, id string) (*oidcprovider.Grant, error) {
	g, err := scanGrant(s.pool.QueryRow(ctx, `SELECT `+grantColumns+` FROM oidc_grants WHERE id = $1`, id))
	return g, storeErr("load grant", err)
}

// revokeTokens revokes the tokens of the grants ids.
func revokeTokens(ctx context.Context, tx pgx.Tx, ids []string, at time.Time) error {
	for _, table := range []string{"oidc_access_tokens", "oidc_refresh_tokens"} {
		if _, err := tx.Exec(ctx, `UPDATE `+table+` SET revoked_at = $2 WHERE grant_id = ANY($1) AND revoked_at IS NULL`, ids, at); err != nil {
			return err
		}
	}
	return nil
}

// RevokeGrant revokes the grant and its tokens; auth.ErrNotFound if none.
func (s *OIDCStore) RevokeGrant(ctx context.Context, id string, at time.Time) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE oidc_grants SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1`, id, at)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		return revokeTokens(ctx, tx, []string{id}, at)
	})
	return storeErr("revoke grant", err)
}

// RevokeGrants revokes the user's live grants at the client and their tokens,
// and returns the grants.
func (s *OIDCStore) RevokeGrants(ctx context.Context, userID, clientID string, at time.Time) ([]*oidcprovider.Grant, error) {
	if !isUUID(userID) {
		return nil, nil
	}
	var out []*oidcprovider.Grant
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE oidc_grants SET revoked_at = $3
			WHERE user_id = $1 AND client_id = $2 AND revoked_at IS NULL RETURNING `+grantColumns, userID, clientID, at)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*oidcprovider.Grant, error) { return scanGrant(r) })
		if err != nil {
			return err
		}
		ids := make([]string, len(out))
		for i, g := range out {
			ids[i] = g.ID
		}
		return revokeTokens(ctx, tx, ids, at)
	})
	if err != nil {
		return nil, storeErr("revoke grants", err)
	}
	return out, nil
}

func insertToken(ctx context.Context, tx pgx.Tx, table string, t *oidcprovider.Token) error {
	_, err := tx.Exec(ctx, `INSERT INTO `+table+` (id, grant_id, scopes, created_at, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		t.ID, t.GrantID, strs(t.Scopes), t.CreatedAt, t.ExpiresAt, optTime(t.RevokedAt))
	return err
}

var errUsed = errors.New("used or revoked already")

// IssueTokens makes a token response's writes in one transaction: it redeems
// is.Code (creating is.Grant) or rotates is.Rotate, then stores the tokens.
// auth.ErrConflict if the code or refresh token was used already; auth.ErrNotFound
// if the grant's user or session is gone.
func (s *OIDCStore) IssueTokens(ctx context.Context, is *oidcprovider.Issue) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if is.Code != "" {
			tag, err := tx.Exec(ctx, `UPDATE oidc_auth_requests SET code_used_at = $2 WHERE id = $1 AND code_hash IS NOT NULL AND code_used_at IS NULL`, is.Code, is.Now)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return errUsed
			}
			if is.Grant != nil {
				if err := insertGrant(ctx, tx, is.Grant); err != nil {
					return err
				}
			}
		}
		if is.Rotate != "" {
			tag, err := tx.Exec(ctx, `UPDATE oidc_refresh_tokens SET used_at = COALESCE(used_at, $2)
				WHERE id = $1 AND revoked_at IS NULL AND (used_at IS NULL OR used_at >= $3)`, is.Rotate, is.Now, optTime(is.RotateUsedSince))
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return errUsed
			}
		}
		if is.Access != nil {
			if err := insertToken(ctx, tx, "oidc_access_tokens", is.Access); err != nil {
				return err
			}
		}
		if is.Refresh != nil {
			return insertToken(ctx, tx, "oidc_refresh_tokens", is.Refresh)
		}
		return nil
	})
	if errors.Is(err, errUsed) {
		return fmt.Errorf("issue tokens: %w (%w)", auth.ErrConflict, err)
	}
	return storeErr("issue tokens", err)
}

func (s *OIDCStore) token(ctx context.Context, table, id string) (*oidcprovider.Token, error) {
	used := "used_at"
	if table == "oidc_access_tokens" {
		used = "NULL::timestamptz"
	}
	var t oidcprovider.Token
	var usedAt, revoked *time.Time
	err := s.pool.QueryRow(ctx, `SELECT id, grant_id, scopes, created_at, expires_at, `+used+`, revoked_at FROM `+table+` WHERE id = $1`, id).
		Scan(&t.ID, &t.GrantID, &t.Scopes, &t.CreatedAt, &t.ExpiresAt, &usedAt, &revoked)
	if err != nil {
		return nil, err
	}
	t.UsedAt, t.RevokedAt = fromOpt(usedAt), fromOpt(revoked)
	return &t, nil
}

// AccessToken returns the access token with id; auth.ErrNotFound if none.
func (s *OIDCStore) AccessToken(ctx context.Context, id string) (*oidcprovider.Token, error) {
	t, err := s.token(ctx, "oidc_access_tokens", id)
	return t, storeErr("load access token", err)
}

// RefreshToken returns the refresh token with id (its hash); auth.ErrNotFound if
// none.
func (s *OIDCStore) RefreshToken(ctx context.Context, id string) (*oidcprovider.Token, error) {
	t, err := s.token(ctx, "oidc_refresh_tokens", id)
	return t, storeErr("load refresh token", err)
}

// RevokeAccessToken revokes one access token; auth.ErrNotFound if none.
func (s *OIDCStore) RevokeAccessToken(ctx context.Context, id string, at time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE oidc_access_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1`, id, at)
	if err == nil && tag.RowsAffected() == 0 {
		err = pgx.ErrNoRows
	}
	return storeErr("revoke access token", err)
}

func querySigningKeys(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) ([]*oidcprovider.StoredKey, error) {
	rows, err := q.Query(ctx, `SELECT id, algorithm, private_key, created_at FROM oidc_signing_keys ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*oidcprovider.StoredKey, error) {
		var k oidcprovider.StoredKey
		err := r.Scan(&k.ID, &k.Algorithm, &k.PrivateKey, &k.CreatedAt)
		return &k, err
	})
}

// SigningKeys returns the stored signing keys, newest first.
func (s *OIDCStore) SigningKeys(ctx context.Context) ([]*oidcprovider.StoredKey, error) {
	keys, err := querySigningKeys(ctx, s.pool)
	return keys, storeErr("load signing keys", err)
}

// EnsureSigningKey stores k unless a key is stored already, and returns the
// newest stored key. The table lock makes replicas starting at once agree.
func (s *OIDCStore) EnsureSigningKey(ctx context.Context, k *oidcprovider.StoredKey) (*oidcprovider.StoredKey, error) {
	var newest *oidcprovider.StoredKey
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE oidc_signing_keys IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return err
		}
		keys, err := querySigningKeys(ctx, tx)
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			newest = keys[0]
			return nil
		}
		if _, err := tx.Exec(ctx, `INSERT INTO oidc_signing_keys (id, algorithm, private_key, created_at) VALUES ($1, $2, $3, $4)`,
			k.ID, k.Algorithm, k.PrivateKey, k.CreatedAt); err != nil {
			return err
		}
		newest = k
		return nil
	})
	if err != nil {
		return nil, storeErr("store signing key", err)
	}
	return newest, nil
}

// DeleteExpired removes requests (once their code expired too), grants (and with
// them their tokens) and tokens that expired before before.
func (s *OIDCStore) DeleteExpired(ctx context.Context, before time.Time) (int, error) {
	n := 0
	for _, q := range []string{
		`DELETE FROM oidc_auth_requests WHERE expires_at < $1 AND (code_expires_at IS NULL OR code_expires_at < $1)`,
		`DELETE FROM oidc_grants WHERE expires_at < $1`,
		`DELETE FROM oidc_access_tokens WHERE expires_at < $1`,
		`DELETE FROM oidc_refresh_tokens WHERE expires_at < $1`,
	} {
		tag, err := s.pool.Exec(ctx, q, before)
		if err != nil {
			return n, storeErr("delete expired oidc data", err)
		}
		n += int(tag.RowsAffected())
	}
	return n, nil
}
