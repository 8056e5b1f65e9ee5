package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/hestami/hestami/auth"
)

// LockoutStore is an auth.LockoutStore in Redis, shared by every replica that uses
// the same server. A key's state is a JSON value updated with optimistic
// transactions (WATCH, then MULTI/EXEC), retried when another replica updated
// the key in between, so no update is lost.
type LockoutStore struct {
	c goredis.UniversalClient
}

var _ auth.LockoutStore = (*LockoutStore)(nil)

// NewLockoutStore returns a LockoutStore over c.
func NewLockoutStore(c goredis.UniversalClient) *LockoutStore {
	return &LockoutStore{c: c}
}

// maxTxAttempts bounds the retries of one update under contention.
const maxTxAttempts = 200

func lockoutKey(key string) string { return keyPrefix + key }

func readLockout(ctx context.Context, c goredis.Cmdable, key string) (auth.LockoutState, error) {
	var st auth.LockoutState
	b, err := c.Get(ctx, key).Bytes()
	if errors.Is(err, goredis.Nil) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("decode lockout state: %w", err)
	}
	return st, nil
}

// LockoutState returns key's state, the zero state if there is none.
func (s *LockoutStore) LockoutState(ctx context.Context, key string) (auth.LockoutState, error) {
	st, err := readLockout(ctx, s.c, lockoutKey(key))
	if err != nil {
		return st, fmt.Errorf("read lockout %s from redis: %w", key, err)
	}
	return st, nil
}

// UpdateLockout applies fn to key's state atomically (see auth.LockoutStore); fn
// runs again when another update of the key won the race.
func (s *LockoutStore) UpdateLockout(ctx context.Context, key string, ttl time.Duration, fn func(*auth.LockoutState)) (auth.LockoutState, error) {
	k := lockoutKey(key)
	var out auth.LockoutState
	txf := func(tx *goredis.Tx) error {
		st, err := readLockout(ctx, tx, k)
		if err != nil {
			return err
		}
		fn(&st)
		var b []byte
		if !st.IsZero() {
			if b, err = json.Marshal(st); err != nil {
				return err
			}
		}
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			if b == nil {
				p.Del(ctx, k)
			} else {
				p.Set(ctx, k, b, max(ttl, time.Millisecond))
			}
			return nil
		})
		out = st
		return err
	}
	for attempt := 1; ; attempt++ {
		err := s.c.Watch(ctx, txf, k)
		if err == nil {
			return out, nil
		}
		if !errors.Is(err, goredis.TxFailedErr) {
			return auth.LockoutState{}, fmt.Errorf("update lockout %s in redis: %w", key, err)
		}
		if attempt == maxTxAttempts {
			return auth.LockoutState{}, fmt.Errorf("update lockout %s in redis: gave up after %d attempts, the key changed under every one", key, attempt)
		}
		// Another replica won: back off a little, jittered, so the losers
		// do not collide again at once.
		wait := time.Duration(rand.Int64N(int64(min(attempt, 20))*int64(time.Millisecond)) + 1)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return auth.LockoutState{}, fmt.Errorf("update lockout %s in redis: %w", key, ctx.Err())
		}
	}
}
