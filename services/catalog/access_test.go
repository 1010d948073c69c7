package catalog

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/identity"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// restartNATS stops the test's server and starts it again on the same
// port and store, from its configuration (the account's JWT without
// revocations): clients reconnect to the same URL.
func (h *harness) restartNATS() {
	h.t.Helper()
	port := h.nats.Addr().(*net.TCPAddr).Port
	store := filepath.Dir(h.nats.StoreDir()) // the server adds "jetstream"
	keys, err := identity.Load(h.cfg.IdentityDir, "slipway-test")
	if err != nil {
		h.t.Fatal(err)
	}
	h.nats.Shutdown()
	h.nats.WaitForShutdown()
	srv, err := testenv.NewNATSServer(store, port, keys.ConfigureServer)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	h.nats = srv
}

// newUser has oneadmin create a user in group, as `slipway user create`
// does (the key made here, the JWT from the catalog), and connects as them
// with the credentials file.
func (h *harness) newUser(name, group string) *bus.Bus {
	h.t.Helper()
	b, _ := h.newUserCreds(name, group)
	return b
}

// newUserCreds is newUser that also returns the path of the user's
// credentials file, for the nats CLI.
func (h *harness) newUserCreds(name, group string) (*bus.Bus, string) {
	h.t.Helper()
	key, ev := testenv.CreateUser(h.t, h.ctx, h.cli, name, group)
	creds, err := key.Credentials(ev.JWT)
	if err != nil {
		h.t.Fatal(err)
	}
	path := filepath.Join(h.t.TempDir(), name+".creds")
	if err := identity.WriteCredentials(path, creds); err != nil {
		h.t.Fatal(err)
	}
	b, err := bus.Connect(h.ctx, bus.Config{URL: h.url, Service: "cli", Credentials: path, Logger: testenv.Logger(h.t, 0)})
	if err != nil {
		h.t.Fatalf("connect as %s: %v", name, err)
	}
	h.t.Cleanup(b.Close)
	if h.credsOf == nil {
		h.credsOf = map[string]string{}
	}
	h.credsOf[name] = path
	if b.Sender() != name {
		h.t.Fatalf("%s's credentials send as %q", name, b.Sender())
	}
	return b, path
}

// bobsImage is an image bob imports: his, group users, 600, READY.
func (h *harness) bobsImage(bob *bus.Bus) schemas.Image {
	h.t.Helper()
	staged := "s3://" + h.cfg.UploadBucket + "/uploads/bob/b1/disk.raw"
	h.put(staged, []byte("bob's disk"))
	img, err := answerFrom[schemas.Image](h, bob, schemas.CommandCatalogImageCreate,
		schemas.ImageCreate{Name: "bobs", Path: staged, Staged: true, Format: schemas.DiskFormatRaw}, schemas.EventCatalogImageCreated)
	if err != nil {
		h.t.Fatal(err)
	}
	if img.User != "bob" || img.Group != acl.DefaultGroup || img.Permissions != "600" {
		h.t.Fatalf("bob's image: owner %s, group %s, permissions %s; want bob, users, 600", img.User, img.Group, img.Permissions)
	}
	cmd, c := h.convertCommand(img.ID)
	h.convert(cmd, c, []byte("bob's data"), schemas.DiskFormatRaw)
	h.waitState(img.ID, StateReady)
	return h.mustShow(img.ID)
}

// as sends verb from b and waits for answer or a failure.
func (h *harness) as(b *bus.Bus, verb string, data any, answer string) error {
	h.t.Helper()
	_, err := h.callFrom(b, verb, data, answer)
	return err
}

// mustBeForbidden checks that err is the catalog's refusal with code
// forbidden (of a command or a query), saying who may not do what.
func mustBeForbidden(t testing.TB, what string, err error, says string) {
	t.Helper()
	if msg, ok := forbiddenMessage(err); !ok || !strings.Contains(msg, says) {
		t.Errorf("%s: %v, want a %s refusal saying %q", what, err, schemas.CodeForbidden, says)
	}
}

// forbiddenMessage is what a refusal for want of a right says: a
// command's failed event with code forbidden, or a query's 403; ok is
// false for any other outcome.
func forbiddenMessage(err error) (msg string, ok bool) {
	var ce *bus.CallError
	if errors.As(err, &ce) {
		return ce.Message, ce.Code == schemas.CodeForbidden
	}
	var qe *bus.QueryError
	if errors.As(err, &qe) {
		return qe.Description, qe.Code == bus.CodeForbidden
	}
	return "", false
}

// TestUsersCannotTouchEachOthersImages walks OpenNebula's rules on a
// server that authenticates: bob's image is his (600); alice can neither
// see, use, rename, disable nor delete it; after chmod 604 she can see and
// use it and still not delete it; chown and chgrp need admin, which the
// oneadmin group has; a deleted user's credentials are refused.
func TestUsersCannotTouchEachOthersImages(t *testing.T) {
	h := newHarness(t)
	alice := h.newUser("alice", "")
	bob := h.newUser("bob", "")

	// bob imports a disk; it is his, group users, 600.
	img := h.bobsImage(bob)
	ref := schemas.ImageRef{ID: img.ID}

	// alice: not visible, not hers to change.
	if _, err := bus.Ask(h.ctx, alice, schemas.QryCatalogShow, schemas.CatalogShowRequest{ID: &img.ID}); err == nil || bus.ErrorCode(err) != bus.CodeForbidden {
		t.Errorf("alice shows bob's image: %v, want 403", err)
	}
	if list, err := bus.Ask(h.ctx, alice, schemas.QryCatalogList, schemas.CatalogListRequest{}); err != nil || len(list) != 0 {
		t.Errorf("alice lists %d images (%v), want none", len(list), err)
	}
	says := "user alice may not manage image"
	mustBeForbidden(t, "alice deletes", h.as(alice, schemas.CommandCatalogImageDelete, ref, schemas.EventCatalogImageDeleted), says)
	mustBeForbidden(t, "alice disables", h.as(alice, schemas.CommandCatalogImageDisable, ref, schemas.EventCatalogImageUpdated), says)
	mustBeForbidden(t, "alice renames", h.as(alice, schemas.CommandCatalogImageRename, schemas.ImageRename{ID: img.ID, Name: "mine"}, schemas.EventCatalogImageUpdated), says)
	mustBeForbidden(t, "alice chmods", h.as(alice, schemas.CommandCatalogImageChmod, schemas.ImageChmod{ID: img.ID, Permissions: "666"}, schemas.EventCatalogImageUpdated), says)
	mustBeForbidden(t, "alice encrypts a copy", h.as(alice, schemas.CommandCatalogImageEncrypt, schemas.ImageEncrypt{ID: img.ID, Name: "stolen"}, schemas.EventCatalogImageCreated), "user alice may not use image")
	// The launcher locking bob's image for a VM of alice's is refused too.
	launcher := h.connect(schemas.ServiceLauncher)
	mustBeForbidden(t, "a VM of alice's uses bob's image", h.as(launcher, schemas.CommandCatalogImageUse,
		schemas.ImageUse{ID: img.ID, VMID: 1, OnBehalfOf: "alice"}, schemas.EventCatalogImageUsed), "user alice may not use image")

	// bob opens it to others for use: 604.
	if err := h.as(bob, schemas.CommandCatalogImageChmod, schemas.ImageChmod{ID: img.ID, Permissions: "604"}, schemas.EventCatalogImageUpdated); err != nil {
		t.Fatalf("bob chmods his image: %v", err)
	}
	if got, err := bus.Ask(h.ctx, alice, schemas.QryCatalogShow, schemas.CatalogShowRequest{ID: &img.ID}); err != nil || got.Permissions != "604" {
		t.Errorf("alice shows bob's 604 image: %+v, %v", got, err)
	}
	if err := h.as(launcher, schemas.CommandCatalogImageUse, schemas.ImageUse{ID: img.ID, VMID: 1, OnBehalfOf: "alice"}, schemas.EventCatalogImageUsed); err != nil {
		t.Errorf("a VM of alice's uses bob's 604 image: %v", err)
	}
	mustBeForbidden(t, "alice deletes a 604 image", h.as(alice, schemas.CommandCatalogImageDelete, ref, schemas.EventCatalogImageDeleted), says)

	// chown and chgrp need admin: bob's own bits do not give it, oneadmin has it.
	mustBeForbidden(t, "bob chowns", h.as(bob, schemas.CommandCatalogImageChown, schemas.ImageChown{ID: img.ID, User: "alice"}, schemas.EventCatalogImageUpdated), "user bob may not admin image")
	if err := h.as(h.cli, schemas.CommandCatalogImageChown, schemas.ImageChown{ID: img.ID, User: "alice"}, schemas.EventCatalogImageUpdated); err != nil {
		t.Fatalf("oneadmin chowns to alice: %v", err)
	}
	if got := h.mustShow(img.ID); got.User != "alice" {
		t.Errorf("after chown the owner is %s", got.User)
	}

	// A deleted user's credentials are revoked at the server: bob's open
	// connection is closed and a new one refused.
	if err := h.as(h.cli, schemas.CommandCatalogUserDelete, schemas.UserDelete{Name: "bob"}, schemas.EventCatalogUserDeleted); err != nil {
		t.Fatal(err)
	}
	if !testenv.Eventually(10*time.Second, 20*time.Millisecond, func() bool { return !bob.Conn().IsConnected() }) {
		t.Error("deleted bob's open connection is still connected")
	}
	h.mustBeRefused("deleted bob", h.credsOf["bob"])
}

// mustBeRefused checks that the server refuses a connection with the
// credentials file creds.
func (h *harness) mustBeRefused(who, creds string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	b, err := bus.Connect(ctx, bus.Config{URL: h.url, Service: "cli", Credentials: creds, Logger: testenv.Logger(h.t, 0)})
	if err == nil {
		b.Close()
		h.t.Errorf("%s: the server took the credentials", who)
		return
	}
	if !errors.Is(err, nats.ErrAuthorization) && !errors.Is(err, nats.ErrAuthRevoked) {
		h.t.Errorf("%s: %v, want the server's refusal", who, err)
	}
}

// TestCredentialsReissuedAndRevoked: oneadmin gives alice credentials for a
// new key; her old file is refused from then on (and its connection
// closed), the new one works and still sends as alice; the catalog, started
// again, pushes the revocations again (the server may have restarted).
func TestCredentialsReissuedAndRevoked(t *testing.T) {
	h := newHarness(t)
	old := h.newUser("alice", "")
	key, err := identity.NewUserKey()
	if err != nil {
		t.Fatal(err)
	}
	ev, err := answerFrom[schemas.UserCreated](h, h.cli, schemas.CommandCatalogUserCredentials,
		schemas.UserCredentials{Name: "alice", PublicKey: key.PublicKey()}, schemas.EventCatalogUserCreated)
	if err != nil {
		t.Fatal(err)
	}
	if !testenv.Eventually(10*time.Second, 20*time.Millisecond, func() bool { return !old.Conn().IsConnected() }) {
		t.Error("alice's connection with her old credentials is still connected")
	}
	h.mustBeRefused("alice's old credentials", h.credsOf["alice"])
	creds, err := key.Credentials(ev.JWT)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "alice-new.creds")
	if err := identity.WriteCredentials(path, creds); err != nil {
		t.Fatal(err)
	}
	alice, err := bus.Connect(h.ctx, bus.Config{URL: h.url, Service: "cli", Credentials: path, Logger: testenv.Logger(t, 0)})
	if err != nil {
		t.Fatalf("alice's new credentials: %v", err)
	}
	defer alice.Close()
	if u, err := bus.Ask(h.ctx, alice, schemas.QryCatalogUser, schemas.CatalogUserRequest{Name: "alice"}); err != nil || u.Name != "alice" {
		t.Errorf("alice with her new credentials: %+v, %v", u, err)
	}

	// Unknown users get no credentials, and a bad key none either.
	if _, err := answerFrom[schemas.UserCreated](h, h.cli, schemas.CommandCatalogUserCredentials,
		schemas.UserCredentials{Name: "nobody", PublicKey: key.PublicKey()}, schemas.EventCatalogUserCreated); err == nil {
		t.Error("credentials for a user that does not exist")
	}

	// A server started again from its configuration knows no revocation
	// until the catalog, reconnected, pushes them again; and a catalog
	// started again pushes them too.
	h.restartNATS()
	if !testenv.Eventually(20*time.Second, 100*time.Millisecond, func() bool {
		b, err := bus.Connect(h.ctx, bus.Config{URL: h.url, Service: "cli", Credentials: h.credsOf["alice"], Logger: testenv.Logger(t, 0), ConnectTimeout: 2 * time.Second})
		if err == nil {
			b.Close()
		}
		return err != nil
	}) {
		t.Error("after the server restarted, alice's old credentials are taken for good")
	}
	h.mustBeRefused("alice's old credentials after the server restarted", h.credsOf["alice"])
	h.stop()
	h.start()
	h.mustBeRefused("alice's old credentials after the catalog restarted", h.credsOf["alice"])
}

// TestUsersAndGroups: only administrators create users and groups (the
// server drops the others' commands); a user sees themselves; groups list
// their members; the built-in ones cannot go.
func TestUsersAndGroups(t *testing.T) {
	h := newHarness(t)
	alice := h.newUser("alice", "")
	if u, err := bus.Ask(h.ctx, alice, schemas.QryCatalogUser, schemas.CatalogUserRequest{Name: "alice"}); err != nil || u.Group != acl.DefaultGroup {
		t.Errorf("alice shows herself: %+v, %v", u, err)
	}
	if _, err := bus.Ask(h.ctx, alice, schemas.QryCatalogUser, schemas.CatalogUserRequest{Name: acl.AdminUser}); bus.ErrorCode(err) != bus.CodeForbidden {
		t.Errorf("alice shows oneadmin: %v, want 403", err)
	}
	if err := h.as(h.cli, schemas.CommandCatalogGroupCreate, schemas.GroupCreate{Name: "devs"}, schemas.EventCatalogGroupCreated); err != nil {
		t.Fatal(err)
	}
	if err := h.as(h.cli, schemas.CommandCatalogGroupAddUser, schemas.GroupAddUser{Group: "devs", User: "alice"}, schemas.EventCatalogUserUpdated); err != nil {
		t.Fatal(err)
	}
	groups, err := bus.Ask(h.ctx, h.cli, schemas.QryCatalogGroups, schemas.CatalogGroupsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	members := map[string][]string{}
	for _, g := range groups {
		members[g.Name] = g.Users
	}
	if !slicesEqual(members["devs"], []string{"alice"}) || !slicesEqual(members[acl.AdminGroup], []string{acl.AdminUser}) {
		t.Errorf("groups: %v", members)
	}
	var ce *bus.CallError
	if err := h.as(h.cli, schemas.CommandCatalogGroupDelete, schemas.GroupDelete{Name: "devs"}, schemas.EventCatalogGroupDeleted); !errors.As(err, &ce) || !strings.Contains(ce.Message, "still has users") {
		t.Errorf("deleting a group with members: %v", err)
	}
	if err := h.as(h.cli, schemas.CommandCatalogGroupDelUser, schemas.GroupDelUser{Group: acl.DefaultGroup, User: "alice"}, schemas.EventCatalogUserUpdated); !errors.As(err, &ce) || !strings.Contains(ce.Message, "primary group") {
		t.Errorf("taking alice out of her primary group: %v", err)
	}
	if err := h.as(h.cli, schemas.CommandCatalogUserDelete, schemas.UserDelete{Name: acl.AdminUser}, schemas.EventCatalogUserDeleted); err == nil {
		t.Error("oneadmin was deleted")
	}
	// alice's user-create never reaches the catalog: the server refuses her the subject.
	short, cancel := context.WithTimeout(h.ctx, 2*time.Second)
	defer cancel()
	if _, err := alice.Command(short, ServiceName, schemas.CommandCatalogUserCreate, schemas.UserCreate{Name: "mallory", PublicKey: "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"}); err == nil {
		t.Error("the server took alice's user-create")
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }
