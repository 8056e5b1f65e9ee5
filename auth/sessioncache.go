package auth

import (
	"context"
	"slices"
	"sync"
	"time"
)

// The kinds of Service.Invalidate.
const (
	// InvalidateSession forgets one session (its id: the token's hash).
	InvalidateSession = "session"
	// InvalidateUser forgets every session of a user (the user's id).
	InvalidateUser = "user"
	// InvalidateAll forgets everything (the id is ignored): the invalidations
	// of a while may have been missed.
	InvalidateAll = "all"
)

// DefaultSessionCacheSize is how many sessions the cache holds when
// Config.SessionCacheSize is 0.
const DefaultSessionCacheSize = 10000

// Invalidate forgets what the session cache holds of kind's id: one session
// (InvalidateSession, id is the session id), every session of a user
// (InvalidateUser, the user id), or everything (InvalidateAll, or any kind it
// does not know). Other replicas' revocations and user changes arrive here (package
// postgres's ListenInvalidations); this service's own call it before they return.
func (s *Service) Invalidate(kind, id string) {
	switch kind {
	case InvalidateSession:
		s.cache.forgetSession(id)
	case InvalidateUser:
		s.cache.forgetUser(id)
	case InvalidateAll:
		s.cache.flush()
	default:
		if s.log != nil {
			s.log.Warn("unknown session cache invalidation; forgetting every cached session", "kind", kind)
		}
		s.cache.flush()
	}
}

// revokeSession revokes the user's session id in the store and forgets its cached
// copy, even when the store fails (the revocation may have committed).
func (s *Service) revokeSession(ctx context.Context, userID, id string, at time.Time) error {
	defer s.cache.forgetSession(id)
	return s.store.RevokeSession(ctx, userID, id, at)
}

// revokeSessions revokes the user's sessions but keep in the store and forgets
// every cached session of the user.
func (s *Service) revokeSessions(ctx context.Context, userID, keep string, at time.Time) (int, error) {
	defer s.cache.forgetUser(userID)
	return s.store.RevokeSessions(ctx, userID, keep, at)
}

// sessionCache holds recently validated sessions with their users, so that a
// client's requests in quick succession cost one query, not one each. An entry
// lives ttl at most; revocations and user changes remove entries at once. A nil
// *sessionCache caches nothing.
//
// A load that started before an invalidation must not put its (possibly stale)
// result back after it: every invalidation bumps gen, and put drops results
// loaded under an older gen.
type sessionCache struct {
	ttl time.Duration
	max int

	mu      sync.RWMutex
	gen     uint64
	entries map[string]*cachedSession      // by session id
	byUser  map[string]map[string]struct{} // user id -> session ids
	swept   time.Time                      // when expired entries were last removed
}

type cachedSession struct {
	sess    Session
	user    User
	expires time.Time
}

// newSessionCache returns a cache of at most max sessions kept ttl each; nil
// (no cache) if ttl is not positive.
func newSessionCache(ttl time.Duration, max int) *sessionCache {
	if ttl <= 0 {
		return nil
	}
	if max <= 0 {
		max = DefaultSessionCacheSize
	}
	return &sessionCache{ttl: ttl, max: max, entries: map[string]*cachedSession{}, byUser: map[string]map[string]struct{}{}}
}

// get returns copies of the session id and its user if they were cached less
// than ttl before now.
func (c *sessionCache) get(id string, now time.Time) (*Session, *User, bool) {
	if c == nil {
		return nil, nil, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	e := c.entries[id]
	if e == nil || !now.Before(e.expires) {
		return nil, nil, false
	}
	sess, u := copySession(&e.sess), copyUser(&e.user)
	return sess, u, true
}

// generation is the invalidation count, read before loading what put stores.
func (c *sessionCache) generation() uint64 {
	if c == nil {
		return 0
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

// put caches copies of sess and u, loaded at now, unless something was
// invalidated since gen was read.
func (c *sessionCache) put(gen uint64, sess *Session, u *User, now time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if _, ok := c.entries[sess.ID]; !ok && len(c.entries) >= c.max {
		c.makeRoom(now)
	}
	c.entries[sess.ID] = &cachedSession{sess: *copySession(sess), user: *copyUser(u), expires: now.Add(c.ttl)}
	ids := c.byUser[u.ID]
	if ids == nil {
		ids = map[string]struct{}{}
		c.byUser[u.ID] = ids
	}
	ids[sess.ID] = struct{}{}
}

// makeRoom removes the expired entries (at most once a ttl), and if none was, one
// entry chosen by map order (as good as random for a cache this short-lived).
func (c *sessionCache) makeRoom(now time.Time) {
	if now.Sub(c.swept) >= c.ttl {
		c.swept = now
		for id, e := range c.entries {
			if !now.Before(e.expires) {
				c.remove(id, e.user.ID)
			}
		}
		if len(c.entries) < c.max {
			return
		}
	}
	for id, e := range c.entries {
		c.remove(id, e.user.ID)
		return
	}
}

// touched records a TouchSession of the cached session id.
func (c *sessionCache) touched(id string, at time.Time, ip string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[id]; e != nil {
		e.sess.LastSeenAt = at
		if ip != "" {
			e.sess.IP = ip
		}
	}
}

func (c *sessionCache) forgetSession(id string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if e := c.entries[id]; e != nil {
		c.remove(id, e.user.ID)
	}
}

func (c *sessionCache) forgetUser(userID string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for id := range c.byUser[userID] {
		delete(c.entries, id)
	}
	delete(c.byUser, userID)
}

func (c *sessionCache) flush() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.entries)
	clear(c.byUser)
}

// remove deletes entry id of user userID; c.mu is held.
func (c *sessionCache) remove(id, userID string) {
	delete(c.entries, id)
	if ids := c.byUser[userID]; ids != nil {
		delete(ids, id)
		if len(ids) == 0 {
			delete(c.byUser, userID)
		}
	}
}

// copySession and copyUser copy deeply enough that callers may change what they
// get without changing the cache.
func copySession(s *Session) *Session {
	c := *s
	c.Methods = slices.Clone(s.Methods)
	return &c
}

func copyUser(u *User) *User {
	c := *u
	c.Roles = slices.Clone(u.Roles)
	return &c
}
