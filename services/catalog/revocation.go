package catalog

// Revocation: the catalog signs users' JWTs (user-create, user-credentials)
// and remembers, by user name, the public keys it signed them for. Deleting
// a user, or giving them credentials for a new key, revokes the keys they
// had: the catalog signs the SLIPWAY account's JWT anew with every revoked
// key in it and pushes it to the NATS server, which refuses those keys from
// then on and closes connections open with them. The server keeps a pushed
// JWT in memory only, so the catalog pushes the whole list again whenever
// it starts and whenever its connection comes back (the server may have
// restarted from its configuration).

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/kvstore"
)

// credentialKeys are the public keys a user name was given credentials
// for: those still good, and those revoked with when.
type credentialKeys struct {
	Current []string             `json:"current,omitempty"`
	Revoked map[string]time.Time `json:"revoked,omitempty"`
}

// revokeAll moves every current key to revoked, at t.
func (k *credentialKeys) revokeAll(t time.Time) {
	if len(k.Current) > 0 && k.Revoked == nil {
		k.Revoked = map[string]time.Time{}
	}
	for _, key := range k.Current {
		k.Revoked[key] = t
	}
	k.Current = nil
}

// updateKeys changes the keys of user name with fn, making the record on
// first use; what fn leaves as it was is not written again (fmt prints
// maps sorted, so the two prints compare the content).
func (a *accounts) updateKeys(ctx context.Context, name string, fn func(*credentialKeys)) error {
	if _, err := a.keys.Create(ctx, name, &credentialKeys{}); err != nil && !errors.Is(err, kvstore.ErrExists) {
		return err
	}
	_, _, err := a.keys.Update(ctx, name, func(k *credentialKeys) error {
		before := fmt.Sprint(k)
		fn(k)
		if fmt.Sprint(k) == before {
			return kvstore.ErrNoChange
		}
		return nil
	})
	return err
}

// issued records key as user name's current key; with only, the keys
// they had before are revoked.
func (a *accounts) issued(ctx context.Context, name, key string, only bool) error {
	return a.updateKeys(ctx, name, func(k *credentialKeys) {
		if only {
			k.Current = slices.DeleteFunc(k.Current, func(c string) bool { return c == key })
			k.revokeAll(time.Now())
		}
		if !slices.Contains(k.Current, key) {
			k.Current = append(k.Current, key)
		}
	})
}

// revoked is every key revoked so far, with when.
func (a *accounts) revoked(ctx context.Context) (map[string]time.Time, error) {
	all, err := a.keys.List(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]time.Time{}
	for _, k := range all {
		maps.Copy(out, k.Revoked)
	}
	return out, nil
}

// pushRevocations hands the NATS server the account's JWT with every key
// revoked so far. It does nothing without identity keys, on a server that
// authenticates no one (its connections are not ours to refuse), or with
// nothing revoked.
func (s *Service) pushRevocations(ctx context.Context) error {
	nc := s.bus.Conn()
	if s.issuer == nil || !nc.AuthRequired() {
		return nil
	}
	revoked, err := s.users.revoked(ctx)
	if err != nil {
		return err
	}
	if len(revoked) == 0 {
		// The server's configured JWT says as much, and taking a new one
		// sets the account's imports up anew (bus.whileNoResponders).
		return nil
	}
	token, err := s.issuer.AccountJWT(revoked)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	if err := s.issuer.PushAccount(ctx, nc.Opts, token); err != nil {
		return fmt.Errorf("revoke credentials at the NATS server: %w", err)
	}
	return nil
}

// pushTimeout bounds one push of the account's JWT.
const pushTimeout = 10 * time.Second

// pushOnReconnect pushes the revocations again each time the connection
// comes back, besides what the bus does then.
func (s *Service) pushOnReconnect(ctx context.Context) {
	nc := s.bus.Conn()
	prev := nc.ReconnectHandler()
	nc.SetReconnectHandler(func(c *nats.Conn) {
		if prev != nil {
			prev(c)
		}
		go func() {
			if err := s.pushRevocations(ctx); err != nil {
				s.log.Error("catalog: after reconnecting, revocations not pushed: deleted users' credentials may connect", "err", err)
			}
		}()
	})
}
