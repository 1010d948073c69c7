package market

// What a service's own commands (Config.Commands: market-lxc's app-create
// and app-delete) use of the core: the same permission checks, listing
// and records as the shared contract's commands.

import (
	"context"
	"errors"
	"fmt"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
)

// Sender is who sent a command, as the permission checks see them: a user
// (the catalog's record of their groups), or a service, which passes.
type Sender struct {
	User    acl.User
	Service bool
}

// UsableMarket is marketplace id and the command's sender, if the sender
// may use the marketplace (OpenNebula's use, as for an import). A
// marketplace that does not exist, or one the sender may not use, is a
// refusal (not-found, forbidden); other errors are retried.
func (s *Service) UsableMarket(ctx context.Context, m *bus.Msg, id int64) (Market, Sender, error) {
	mk, err := s.existingMarket(ctx, id)
	if err != nil {
		return mk, Sender{}, err
	}
	u, service, err := s.asker(ctx, m.Sender)
	if err != nil {
		return mk, Sender{}, err
	}
	if err := mayUse(u, service, &mk, m.Name); err != nil {
		return mk, Sender{}, &refusal{bus.WithCode(schemas.CodeForbidden, err)}
	}
	return mk, Sender{User: u, Service: service}, nil
}

// CatalogImage is the catalog's record of image id, if the sender may use
// it (what reading its blob takes, as the catalog's blob-url asks). An
// image that does not exist, or that the sender may not use, is a
// refusal; op names the operation in the message.
func (s *Service) CatalogImage(ctx context.Context, from Sender, id int64, op string) (schemas.Image, error) {
	img, err := bus.Ask(ctx, s.bus, schemas.QryCatalogShow, schemas.CatalogShowRequest{ID: &id})
	if bus.IsNotFound(err) {
		return img, missing("image %d does not exist", id)
	}
	if err != nil {
		return img, fmt.Errorf("the catalog's record of image %d: %w", id, err)
	}
	if from.Service {
		return img, nil
	}
	obj := acl.Object{Kind: "image", ID: img.ID, Owner: img.User, Group: img.Group, Perms: acl.PermsOf(img.Permissions)}
	if err := acl.Check(from.User, obj, acl.Use, op); err != nil {
		return img, &refusal{bus.WithCode(schemas.CodeForbidden, err)}
	}
	return img, nil
}

// MayManageApp checks that the sender may remove an app published by
// publisher: its publisher, an administrator or a service. OpenNebula asks
// manage of the app, whose owner is who created it.
func (f Sender) MayManageApp(app, publisher string) error {
	if f.Service || f.User.IsAdmin() || (publisher != "" && f.User.Name == publisher) {
		return nil
	}
	return &refusal{bus.WithCode(schemas.CodeForbidden,
		fmt.Errorf("user %s may not delete app %s: it was published by %q (only its publisher or an administrator may)", f.User.Name, app, publisher))}
}

// Name is the sender's name as a publisher records it ("" for a service).
func (f Sender) Name() string { return f.User.Name }

// Relist lists marketplace id again now, as a refresh does, and publishes
// apps-refreshed caused by m. Unlike a refresh command it never reuses a
// listing that started before: what the caller just published must show.
func (s *Service) Relist(ctx context.Context, m *bus.Msg, id int64) (schemas.MarketAppsRefreshed, error) {
	defer s.lockListing(id)()
	mk, err := s.existingMarket(ctx, id)
	if err != nil {
		return schemas.MarketAppsRefreshed{}, err
	}
	ev, err := s.relist(ctx, mk)
	if err != nil {
		return ev, err
	}
	_, err = s.bus.Event(ctx, EventAppsRefreshed, idToken(id), ev, CausedBy(m.Envelope, EventAppsRefreshed)...)
	return ev, err
}

// App is the app called name of marketplace id (ErrNotFound when there is
// none).
func (s *Service) App(ctx context.Context, id int64, name string) (App, error) {
	return s.store.app(ctx, id, name)
}

// DropApp removes an app from the service's records at once (app-delete),
// rather than after three listings without it.
func (s *Service) DropApp(ctx context.Context, id int64, name string) error {
	err := s.store.deleteApp(ctx, id, name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}
