package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/hestami/hestami/auth"
)

// Limiter is an auth.Limiter whose counts live in Redis, shared by every replica
// that uses the same server. Each key is a sorted set of its allowed events
// (scored by the server's clock, in microseconds), updated by one Lua script, so
// concurrent events from several replicas are counted exactly; a key expires
// with its window.
type Limiter struct {
	c goredis.UniversalClient
}

var _ auth.Limiter = (*Limiter)(nil)

// NewLimiter returns a Limiter over c.
func NewLimiter(c goredis.UniversalClient) *Limiter {
	return &Limiter{c: c}
}

// allowScript is the sliding window of auth's Limiter contract: drop the events
// that left the window, refuse if Events remain (saying when the one that must
// leave for a new event to fit does), else record the event. The clock is the
// server's, the same for every replica.
//
// KEYS[1] the key; ARGV[1] events; ARGV[2] window in microseconds; ARGV[3] a
// unique member for the event. Returns {1, 0} or {0, retry-after in µs}.
var allowScript = goredis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local n = redis.call('ZCARD', key)
if n < limit then
	redis.call('ZADD', key, now, ARGV[3])
	redis.call('PEXPIRE', key, math.ceil(window / 1000))
	return {1, 0}
end
local first = redis.call('ZRANGE', key, n - limit, n - limit, 'WITHSCORES')
local retry = tonumber(first[2]) + window - now
if retry < 1 then retry = 1 end
return {0, retry}
`)

// Allow records one event for key and reports whether it is within l (see
// auth.Limiter). It returns auth.ErrBadLimit (wrapped) for a limit with no events
// or no window, and the server's error (naming the key, which holds no secret)
// if Redis fails: the caller decides whether to fail open or closed.
func (l *Limiter) Allow(ctx context.Context, key string, lim auth.Limit) (auth.LimitResult, error) {
	if err := auth.CheckLimit(lim); err != nil {
		return auth.LimitResult{}, err
	}
	window := max(lim.Window.Microseconds(), 1)
	res, err := allowScript.Run(ctx, l.c, []string{keyPrefix + "limit:" + key}, lim.Events, window, eventID()).Int64Slice()
	if err != nil {
		return auth.LimitResult{}, fmt.Errorf("rate limit %s in redis: %w", key, err)
	}
	if len(res) != 2 {
		return auth.LimitResult{}, fmt.Errorf("rate limit %s in redis: script returned %v", key, res)
	}
	if res[0] == 1 {
		return auth.LimitResult{Allowed: true}, nil
	}
	return auth.LimitResult{RetryAfter: time.Duration(res[1]) * time.Microsecond}, nil
}

// Reset forgets key's events.
func (l *Limiter) Reset(ctx context.Context, key string) error {
	if err := l.c.Del(ctx, keyPrefix+"limit:"+key).Err(); err != nil {
		return fmt.Errorf("reset rate limit %s in redis: %w", key, err)
	}
	return nil
}

// eventID is a unique member for one event (two events in the same microsecond
// must both count).
func eventID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
