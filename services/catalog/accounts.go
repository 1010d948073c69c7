package catalog

// Users and groups, as OpenNebula has them: each user has a primary group
// and may be in more; the oneadmin group are the administrators; the
// oneadmin user and the oneadmin and users groups exist from the start. A
// user's groups are kept on the user alone; a group's members are read
// from the users.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/identity"
	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/schemas"
)

// accounts keeps users ("user.<name>") and groups ("group.<name>") in the
// catalog_accounts bucket.
type accounts struct {
	users  *kvstore.Store[string, schemas.User]
	groups *kvstore.Store[string, schemas.Group]
	// keys ("keys.<name>") are the public keys each user name was given
	// credentials for (revocation.go); they outlive a deleted user.
	keys *kvstore.Store[string, credentialKeys]
}

func newAccounts(kv jetstream.KeyValue) *accounts {
	return &accounts{
		users:  kvstore.New[string](kv, kvstore.Config[schemas.User]{What: "user", Prefix: "user."}),
		groups: kvstore.New[string](kv, kvstore.Config[schemas.Group]{What: "group", Prefix: "group."}),
		keys:   kvstore.New[string](kv, kvstore.Config[credentialKeys]{What: "keys of user", Prefix: "keys."}),
	}
}

// bootstrap makes what exists from the start: the oneadmin and users
// groups and the oneadmin user. It keeps what is already there.
func (a *accounts) bootstrap(ctx context.Context) error {
	t := now()
	for _, g := range []string{acl.AdminGroup, acl.DefaultGroup} {
		if _, err := a.groups.Create(ctx, g, &schemas.Group{Name: g, CreatedAt: t}); err != nil && !errors.Is(err, kvstore.ErrExists) {
			return err
		}
	}
	admin := &schemas.User{Name: acl.AdminUser, Group: acl.AdminGroup, Groups: []string{acl.AdminGroup}, CreatedAt: t}
	if _, err := a.users.Create(ctx, acl.AdminUser, admin); err != nil && !errors.Is(err, kvstore.ErrExists) {
		return err
	}
	return nil
}

// user reads a user a command or query names as its sender; one the
// catalog does not know is forbidden everything.
func (a *accounts) user(ctx context.Context, name string) (*schemas.User, error) {
	u, _, err := a.users.Get(ctx, name)
	if errors.Is(err, kvstore.ErrNotFound) {
		return nil, forbidden(fmt.Errorf("%q is no user of this catalog", name))
	}
	return u, err
}

// named reads a user or group a command names; a missing one is refused.
func named[T any](ctx context.Context, st *kvstore.Store[string, T], what, name string) (*T, error) {
	v, _, err := st.Get(ctx, name)
	if errors.Is(err, kvstore.ErrNotFound) {
		return nil, refuse("%s %q does not exist", what, name)
	}
	return v, err
}

// updateNamed changes with fn the user or group a command names; a
// missing one is refused.
func updateNamed[T any](ctx context.Context, st *kvstore.Store[string, T], what, name string, fn func(*T) error) (*T, error) {
	v, _, err := st.Update(ctx, name, fn)
	if errors.Is(err, kvstore.ErrNotFound) {
		return nil, refuse("%s %q does not exist", what, name)
	}
	return v, err
}

// members lists the users in group g.
func (a *accounts) members(ctx context.Context, g string) ([]string, error) {
	users, err := a.users.List(ctx)
	if err != nil {
		return nil, err
	}
	return membersOf(users, g), nil
}

// membersOf are the names of those of users who are in group g.
func membersOf(users []schemas.User, g string) []string {
	var out []string
	for _, u := range users {
		if slices.Contains(u.Groups, g) {
			out = append(out, u.Name)
		}
	}
	return out
}

// emitAccount publishes event about the user or group name, caused by m.
func (s *Service) emitAccount(ctx context.Context, m *bus.Msg, event, name string, data any) error {
	_, err := s.bus.Event(ctx, event, name, data, causedBy(m.Envelope, event)...)
	return err
}

// accountCommand runs the user and group commands; ok is false for any
// other command.
func (s *Service) accountCommand(ctx context.Context, m *bus.Msg) (ok bool, err error) {
	switch m.Name {
	case schemas.CommandCatalogUserCreate:
		var req schemas.UserCreate
		return true, decodeThen(m, &req, func() error { return s.userCreate(ctx, m, req) })
	case schemas.CommandCatalogUserCredentials:
		var req schemas.UserCredentials
		return true, decodeThen(m, &req, func() error { return s.userCredentials(ctx, m, req) })
	case schemas.CommandCatalogUserDelete:
		var req schemas.UserDelete
		return true, decodeThen(m, &req, func() error { return s.userDelete(ctx, m, req.Name) })
	case schemas.CommandCatalogGroupCreate:
		var req schemas.GroupCreate
		return true, decodeThen(m, &req, func() error { return s.groupCreate(ctx, m, req.Name) })
	case schemas.CommandCatalogGroupDelete:
		var req schemas.GroupDelete
		return true, decodeThen(m, &req, func() error { return s.groupDelete(ctx, m, req.Name) })
	case schemas.CommandCatalogGroupAddUser:
		var req schemas.GroupAddUser
		return true, decodeThen(m, &req, func() error { return s.groupMember(ctx, m, req.Group, req.User, true) })
	case schemas.CommandCatalogGroupDelUser:
		var req schemas.GroupDelUser
		return true, decodeThen(m, &req, func() error { return s.groupMember(ctx, m, req.Group, req.User, false) })
	case schemas.CommandCatalogUserQuota:
		var req schemas.UserQuota
		return true, decodeThen(m, &req, func() error { return s.userQuota(ctx, m, req) })
	case schemas.CommandCatalogGroupQuota:
		var req schemas.GroupQuota
		return true, decodeThen(m, &req, func() error { return s.groupQuota(ctx, m, req) })
	}
	return false, nil
}

func decodeThen(m *bus.Msg, req any, run func() error) error {
	if err := decode(m, req); err != nil {
		return err
	}
	return run()
}

// userCreate records the user and signs a JWT for the public key the
// caller sent: the seed stays where the caller made it.
func (s *Service) userCreate(ctx context.Context, m *bus.Msg, req schemas.UserCreate) error {
	if s.issuer == nil {
		return refuse("%w", errNoIssuer)
	}
	group := req.Group
	if group == "" {
		group = acl.DefaultGroup
	}
	p := identity.User(req.Name, group == acl.AdminGroup)
	if err := p.Validate(); err != nil {
		return refuse("%w", err)
	}
	if _, err := named(ctx, s.users.groups, "group", group); err != nil {
		return err
	}
	u := &schemas.User{Name: req.Name, Group: group, Groups: []string{group}, CreatedAt: now()}
	if _, err := s.users.users.Create(ctx, req.Name, u); err != nil {
		if !errors.Is(err, kvstore.ErrExists) {
			return err
		}
		// A redelivery after a crash finds its own record: answer again.
		have, _, gerr := s.users.users.Get(ctx, req.Name)
		if gerr != nil || have.Group != group {
			return refuse("user %q already exists", req.Name)
		}
		u = have
	}
	return s.issue(ctx, m, u, req.PublicKey, false)
}

// issue signs a JWT for user u's public key, records the key (with only,
// revoking the ones u had before, at the server too) and answers with
// user-created.
func (s *Service) issue(ctx context.Context, m *bus.Msg, u *schemas.User, key string, only bool) error {
	p := identity.User(u.Name, slices.Contains(u.Groups, acl.AdminGroup))
	token, err := s.issuer.Issue(p, key, s.bus.Prefix())
	if err != nil {
		return refuse("%w", err)
	}
	if err := s.users.issued(ctx, u.Name, key, only); err != nil {
		return err
	}
	if only {
		if err := s.pushRevocations(ctx); err != nil {
			return err
		}
	}
	return s.emitAccount(ctx, m, schemas.EventCatalogUserCreated, u.Name, schemas.UserCreated{User: *u, JWT: token})
}

// userCredentials gives an existing user credentials for a new key and
// revokes the keys they had.
func (s *Service) userCredentials(ctx context.Context, m *bus.Msg, req schemas.UserCredentials) error {
	if s.issuer == nil {
		return refuse("%w", errNoIssuer)
	}
	u, err := named(ctx, s.users.users, "user", req.Name)
	if err != nil {
		return err
	}
	return s.issue(ctx, m, u, req.PublicKey, true)
}

func (s *Service) userDelete(ctx context.Context, m *bus.Msg, name string) error {
	if name == acl.AdminUser {
		return refuse("the %s user cannot be deleted", acl.AdminUser)
	}
	if _, err := named(ctx, s.users.users, "user", name); err != nil {
		return err
	}
	// Revoked first: should the push fail, the user is still there and a
	// redelivery tries again.
	if err := s.users.updateKeys(ctx, name, func(k *credentialKeys) { k.revokeAll(time.Now()) }); err != nil {
		return err
	}
	if err := s.pushRevocations(ctx); err != nil {
		return err
	}
	if err := s.users.users.Delete(ctx, name); err != nil {
		return err
	}
	return s.emitAccount(ctx, m, schemas.EventCatalogUserDeleted, name, schemas.UserDeleted{Name: name})
}

func (s *Service) groupCreate(ctx context.Context, m *bus.Msg, name string) error {
	g := &schemas.Group{Name: name, CreatedAt: now()}
	if _, err := s.users.groups.Create(ctx, name, g); errors.Is(err, kvstore.ErrExists) {
		return refuse("group %q already exists", name)
	} else if err != nil {
		return err
	}
	return s.emitAccount(ctx, m, schemas.EventCatalogGroupCreated, name, schemas.GroupCreated{Group: *g})
}

func (s *Service) groupDelete(ctx context.Context, m *bus.Msg, name string) error {
	if name == acl.AdminGroup || name == acl.DefaultGroup {
		return refuse("the %s group cannot be deleted", name)
	}
	if _, err := named(ctx, s.users.groups, "group", name); err != nil {
		return err
	}
	if users, err := s.users.members(ctx, name); err != nil {
		return err
	} else if len(users) > 0 {
		return refuse("group %q still has users: %v", name, users)
	}
	if err := s.users.groups.Delete(ctx, name); err != nil {
		return err
	}
	return s.emitAccount(ctx, m, schemas.EventCatalogGroupDeleted, name, schemas.GroupDeleted{Name: name})
}

// groupMember adds user to group, or takes them out of it (never out of
// their primary group).
func (s *Service) groupMember(ctx context.Context, m *bus.Msg, group, user string, add bool) error {
	if _, err := named(ctx, s.users.groups, "group", group); err != nil {
		return err
	}
	u, err := updateNamed(ctx, s.users.users, "user", user, func(u *schemas.User) error {
		in := slices.Contains(u.Groups, group)
		switch {
		case add && in, !add && !in:
			return kvstore.ErrNoChange
		case add:
			u.Groups = append(u.Groups, group)
		case group == u.Group:
			return refuse("%q is user %s's primary group", group, user)
		default:
			u.Groups = slices.DeleteFunc(u.Groups, func(g string) bool { return g == group })
		}
		return nil
	})
	if err != nil {
		return err
	}
	return s.emitAccount(ctx, m, schemas.EventCatalogUserUpdated, user, schemas.UserUpdated{User: *u})
}

// The accounts' queries.

// usersAndImages lists the users, and the images their usage is counted
// from.
func (s *Service) usersAndImages(ctx context.Context) ([]schemas.User, []schemas.Image, error) {
	users, err := s.users.users.List(ctx)
	if err != nil {
		return nil, nil, err
	}
	all, err := s.images.List(ctx)
	return users, all, err
}

func (s *Service) queryUsers(ctx context.Context, _ schemas.CatalogUsersRequest) (schemas.CatalogUsersReply, error) {
	users, all, err := s.usersAndImages(ctx)
	if err != nil {
		return nil, err
	}
	for i := range users {
		s.reportUser(all, &users[i])
	}
	return users, nil
}

// reportUser fills in u's quotas with what u's images take.
func (s *Service) reportUser(all []schemas.Image, u *schemas.User) {
	u.Quotas = s.quotaReport(all, u.Quotas, func(img *schemas.Image) bool { return img.User == u.Name })
}

// queryUser shows a user to themselves, or to an administrator.
func (s *Service) queryUser(ctx context.Context, r schemas.CatalogUserRequest) (schemas.User, error) {
	c, err := s.askedBy(ctx)
	if err != nil {
		return schemas.User{}, err
	}
	if c.service == "" && !c.user.IsAdmin() && c.user.Name != r.Name {
		return schemas.User{}, bus.Forbidden(fmt.Errorf("user %s may see only themselves, not %q", c.user.Name, r.Name))
	}
	u, _, err := s.users.users.Get(ctx, r.Name)
	if errors.Is(err, kvstore.ErrNotFound) {
		return schemas.User{}, bus.NotFound(fmt.Errorf("user %q does not exist", r.Name))
	}
	if err != nil {
		return schemas.User{}, err
	}
	all, err := s.images.List(ctx)
	if err != nil {
		return schemas.User{}, err
	}
	s.reportUser(all, u)
	return *u, nil
}

func (s *Service) queryGroups(ctx context.Context, _ schemas.CatalogGroupsRequest) (schemas.CatalogGroupsReply, error) {
	groups, err := s.users.groups.List(ctx)
	if err != nil {
		return nil, err
	}
	users, all, err := s.usersAndImages(ctx)
	if err != nil {
		return nil, err
	}
	for i, g := range groups {
		groups[i].Users = membersOf(users, g.Name)
		groups[i].Quotas = s.quotaReport(all, g.Quotas, func(img *schemas.Image) bool { return img.Group == g.Name })
	}
	return groups, nil
}
