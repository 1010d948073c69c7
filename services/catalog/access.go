package catalog

// Who may do what, checked once for every command and query: the sender is
// what the NATS server authenticated (the subject's last token, bus.Msg.
// Sender), never a payload field; what a command needs on the image it
// names is its schema's x-slipway "access" (schemas.Message.Access); the
// rule is OpenNebula's (package acl). Handlers only read the caller the
// check leaves in their context.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
)

// caller is who sent a command or asked a query.
type caller struct {
	// service is the sending service's name; "" for a user. A service is
	// trusted with what the server lets it send (the schemas' senders).
	service string
	// user is the sending user, with their groups, or the user a service
	// acts for; empty for a service on its own.
	user acl.User
}

// owner is whom a new image belongs to: the user who asked (or whom the
// asking service acts for), else the catalog's default owner.
func (c caller) owner(defUser, defGroup string) (user, group string) {
	if c.user.Name == "" || len(c.user.Groups) == 0 {
		return defUser, defGroup
	}
	return c.user.Name, c.user.Groups[0]
}

// owner is whom an image the command in ctx creates belongs to, and its
// group.
func (s *Service) owner(ctx context.Context) (user, group string) {
	return callerOf(ctx).owner(s.cfg.User, s.cfg.Group)
}

func (s *Service) ownerName(ctx context.Context) string {
	u, _ := s.owner(ctx)
	return u
}

type callerKey struct{}

// callerOf is the caller authorize left in ctx; a context without one (a
// saga step the reconciler resumes) acts for the catalog itself.
func callerOf(ctx context.Context) caller {
	c, ok := ctx.Value(callerKey{}).(caller)
	if !ok {
		return caller{service: ServiceName}
	}
	return c
}

// stager is whose staging prefix a staged path of c's must be under: the
// sending service's own (kernel-registry, launcher), else the user's. It
// comes from the authenticated sender, never from the message.
func (c caller) stager() string {
	if c.service != "" {
		return c.service
	}
	return c.user.Name
}

// forbidden is a refusal with the code that says the sender lacks a right.
func forbidden(err error) error { return &refusal{bus.WithCode(schemas.CodeForbidden, err)} }

// identify resolves a sender: a service of the contract, or a user the
// catalog knows. An unknown name is refused: a deleted user's credentials
// may still connect, but the catalog takes nothing from them.
func (s *Service) identify(ctx context.Context, sender string) (caller, error) {
	if sender == "" {
		return caller{}, forbidden(errors.New("the command's subject names no sender (<prefix>.cmd.catalog.<verb>.<sender>)"))
	}
	if schemas.IsService(sender) {
		return caller{service: sender}, nil
	}
	u, err := s.users.user(ctx, sender)
	if err != nil {
		return caller{}, err
	}
	return caller{user: acl.User{Name: u.Name, Groups: u.Groups}}, nil
}

// authorize identifies m's sender and checks what m's schema says a user
// needs on the image it names. A service acting for a user names them
// (on_behalf_of): the check, and the ownership of what it creates, are
// then the user's. It returns ctx carrying the caller.
func (s *Service) authorize(ctx context.Context, m *bus.Msg) (context.Context, error) {
	c, err := s.identify(ctx, m.Sender)
	if err != nil {
		return ctx, err
	}
	if name := onBehalfOf(m.Data); name != "" && c.service != "" {
		u, err := s.identify(ctx, name)
		if err != nil {
			return ctx, err
		}
		c.user = u.user
	}
	ctx = context.WithValue(ctx, callerKey{}, c)
	if err := c.maySend(m.Name); err != nil {
		return ctx, err
	}
	access := schemas.AccessOf(ServiceName, m.Name)
	if access == "" {
		return ctx, nil
	}
	id, ok := schemas.PeekObjectID(m.Data)
	if !ok {
		return ctx, forbidden(fmt.Errorf("%s names no image to check (its id)", m.Name))
	}
	img, _, err := s.images.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return ctx, nil // nothing to protect: the handler says it does not exist
	}
	if err != nil {
		return ctx, err
	}
	if err := c.may(img, acl.LevelOf(access), m.Name); err != nil {
		return ctx, err
	}
	return ctx, lockRefuses(img, m.Name, access)
}

// maySend checks, behind the server's publish permissions, that a user
// sends only the commands the schema lets users send: those it grants
// only "admins" (users, groups, quotas) need the oneadmin group.
func (c caller) maySend(command string) error {
	if c.service != "" || c.user.IsAdmin() {
		return nil
	}
	msg, ok := schemas.Lookup(schemas.KindCommand, ServiceName, command)
	if !ok || slices.Contains(msg.Senders, schemas.SenderUsers) {
		return nil
	}
	return forbidden(fmt.Errorf("user %s may not send %s: it is for administrators (the %s group)", c.user.Name, command, acl.AdminGroup))
}

// onBehalfOf is the user a service's command acts for, when it names one.
func onBehalfOf(data []byte) string {
	var v struct {
		OnBehalfOf string `json:"on_behalf_of"`
	}
	_ = json.Unmarshal(data, &v) // the schema has been checked
	return v.OnBehalfOf
}

// may checks that c has level on img: a service on its own always, a
// user (or a service acting for one) by the image's owner, group and
// permission bits.
func (c caller) may(img *schemas.Image, level acl.Level, op string) error {
	if c.service != "" && c.user.Name == "" {
		return nil
	}
	if err := acl.Check(c.user, imageObject(img), level, op); err != nil {
		return forbidden(err)
	}
	return nil
}

// imageObject is img as package acl sees it. An image recorded before
// permissions existed is its owner's alone (OpenNebula's default, 600).
func imageObject(img *schemas.Image) acl.Object {
	return acl.Object{Kind: "image", ID: img.ID, Owner: img.User, Group: img.Group, Perms: acl.PermsOf(img.Permissions)}
}

// askedBy identifies who asked a query; an unknown user is refused.
func (s *Service) askedBy(ctx context.Context) (caller, error) {
	c, err := s.identify(ctx, bus.QuerySender(ctx))
	if err != nil {
		var r *refusal
		if errors.As(err, &r) {
			return c, bus.Forbidden(r.err)
		}
	}
	return c, err
}

// visible reports whether the asker may see img: use, as OpenNebula asks
// of `oneimage show`.
func (c caller) visible(img *schemas.Image) bool {
	return c.may(img, acl.Use, "show") == nil
}

// filter is OpenNebula's filter flag of a list (all, mine, group) as a
// test of an image; a service on its own asks as the catalog's default
// owner.
func (c caller) filter(f schemas.ListFilter, defUser, defGroup string) func(*schemas.Image) bool {
	user, groups := c.user.Name, c.user.Groups
	if user == "" {
		user, groups = defUser, []string{defGroup}
	}
	switch f {
	case schemas.ListFilterMine:
		return func(img *schemas.Image) bool { return img.User == user }
	case schemas.ListFilterGroup:
		return func(img *schemas.Image) bool { return img.User == user || slices.Contains(groups, img.Group) }
	}
	return func(*schemas.Image) bool { return true }
}

// peekID is the image a command names, for its failed event; nil when it
// names none.
func peekID(m *bus.Msg) *int64 {
	if id, ok := schemas.PeekObjectID(m.Data); ok {
		return &id
	}
	return nil
}

// errNoIssuer is user-create's refusal when the catalog was given no keys.
var errNoIssuer = fmt.Errorf("the catalog issues no credentials: it has no identity keys (%s)", EnvIdentityDir)

// Image locks (OpenNebula's `oneimage lock`): a lock refuses the commands
// whose access level (the schemas' x-slipway "access") it covers, whoever
// sends them. It is checked in authorize, once for every command, right
// after the permission check, so no handler can forget it:
//
//	use     refuses use, manage and admin commands
//	manage  refuses manage and admin commands
//	admin   refuses admin commands
//	all     refuses every command naming the image
//
// Every catalog command on an image needs at least use, so all and use
// refuse the same commands; all is kept for OpenNebula's sake. Unlocking
// (and locking again, which replaces the lock) is never refused by a lock;
// both need manage. image-release (a VM giving an image back) has no
// access level and is not refused: a lock never strands a VM's image.

// lockRefuses says why img's lock refuses command, which needs access;
// nil when it does not.
func lockRefuses(img *schemas.Image, command, access string) error {
	l := img.Lock
	if l == nil || access == "" || command == schemas.CommandCatalogImageLock || command == schemas.CommandCatalogImageUnlock {
		return nil
	}
	if !lockCovers(l.Level, acl.LevelOf(access)) {
		return nil
	}
	return &refusal{bus.WithCode(schemas.CodeImageLocked, fmt.Errorf("image %d is locked (%s) by %s since %s: %s is refused until it is unlocked (slipway image unlock %d)",
		img.ID, strings.ToUpper(string(l.Level)), l.LockedBy, l.LockedAt, command, img.ID))}
}

// lockCovers reports whether a lock at level refuses an operation that
// needs op.
func lockCovers(level schemas.LockLevel, op acl.Level) bool {
	switch level {
	case schemas.LockLevelUse, schemas.LockLevelAll:
		return true
	case schemas.LockLevelManage:
		return op == acl.Manage || op == acl.Admin
	case schemas.LockLevelAdmin:
		return op == acl.Admin
	}
	return false
}

// datastoreObject is ds as package acl sees it.
func datastoreObject(ds Datastore) acl.Object {
	return acl.Object{Kind: "datastore", ID: ds.ID, Owner: ds.User, Group: ds.Group, Perms: acl.PermsOf(ds.Permissions)}
}

// mayUseDatastore checks that c may create images in ds (OpenNebula's USE
// on the datastore): a service on its own always, a user (or a service
// acting for one) by the datastore's owner, group and bits.
func (c caller) mayUseDatastore(ds Datastore) error {
	if c.service != "" && c.user.Name == "" {
		return nil
	}
	if err := acl.Check(c.user, datastoreObject(ds), acl.Use, "create an image in"); err != nil {
		return forbidden(err)
	}
	return nil
}
