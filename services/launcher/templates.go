package launcher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/launcher/qemu"
	"github.com/slipway/slipway/services/launcher/vmtemplate"
)

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

// decode reads a schema-valid payload; what still does not fit the Go type
// is the sender's fault.
func decode(m *bus.Msg, v any) error {
	if err := m.Decode(v); err != nil {
		return &refusal{err: err}
	}
	return nil
}

// parseTemplate checks a template's text with the same parser instantiate
// uses, so a template that was accepted can be instantiated: restricted
// attributes first (naming the setting that allows them) unless admin says
// the oneadmin group wrote it, then the attributes' meaning, then RAW
// against qemu.ParseRaw's policy, which binds everyone.
func (s *Service) parseTemplate(text string, admin bool) (*vmtemplate.Spec, error) {
	if !admin {
		if err := s.conf.checkRestricted(text); err != nil {
			return nil, err
		}
	}
	spec, err := vmtemplate.Parse(text)
	if err != nil {
		return nil, err
	}
	if _, err := qemu.ParseRaw(spec.Raw); err != nil {
		return nil, err
	}
	return spec, nil
}

func (s *Service) templateCreate(ctx context.Context, m *bus.Msg) error {
	var req schemas.LauncherTemplateCreate
	if err := decode(m, &req); err != nil {
		return err
	}
	id, done, prev, err := priorCreate(ctx, s, m, s.templates)
	if err != nil {
		return err
	}
	if prev != nil {
		return s.emitTemplate(ctx, m, schemas.EventLauncherTemplateCreated, prev) // a redelivery: the same event
	}
	admin, err := s.fromAdmin(ctx, m)
	if err != nil {
		return err
	}
	if _, err := s.parseTemplate(req.Template, admin); err != nil {
		return refuse(nil, "template %q: %v", req.Name, err)
	}
	if holder, err := s.templates.LookupName(ctx, kvstore.Name{req.Name}); err == nil {
		if live, err := s.templateHolds(ctx, req.Name)(holder); err != nil {
			return err
		} else if live && (!done || holder != id) {
			return refuse(nil, "a template named %q already exists (ID %d): template names are unique", req.Name, holder)
		}
	}
	if !done {
		// Recorded first: a redelivery after a crash reuses this ID.
		if id, err = s.templates.NextID(ctx); err != nil {
			return err
		}
		if err := s.markProcessed(ctx, m, id); err != nil {
			return err
		}
	}
	holder, err := s.templates.ClaimName(ctx, kvstore.Name{req.Name}, id, s.templateHolds(ctx, req.Name))
	if err != nil {
		return err
	}
	if holder != id {
		return refuse(nil, "a template named %q already exists (ID %d): template names are unique", req.Name, holder)
	}
	if req.OnBehalfOf != "" && bus.UserOf(m) != "" {
		return refuse(nil, "template %q: only a service may create a template on behalf of another user", req.Name)
	}
	user, group, perms, err := s.ownership(ctx, m, req.OnBehalfOf)
	if err != nil {
		return err
	}
	t := schemas.VMTemplate{ID: id, Name: req.Name, Template: req.Template, User: user, Group: group, Permissions: perms,
		AdminAttributes: admin, CreatedAt: now()}
	t.UpdatedAt = t.CreatedAt
	if _, err := s.templates.Create(ctx, id, &t); err != nil {
		_ = s.templates.ReleaseName(ctx, kvstore.Name{req.Name}, id)
		return err
	}
	return s.emitTemplate(ctx, m, schemas.EventLauncherTemplateCreated, &t)
}

// templateHolds reports whether a template other than a crash leftover
// holds name.
func (s *Service) templateHolds(ctx context.Context, name string) func(int64) (bool, error) {
	return func(holder int64) (bool, error) {
		t, _, err := s.templates.Get(ctx, holder)
		if errors.Is(err, kvstore.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return t.Name == name, nil
	}
}

// emitTemplate publishes event with the template record, caused by m.
func (s *Service) emitTemplate(ctx context.Context, m *bus.Msg, event string, t *schemas.VMTemplate) error {
	_, err := s.bus.Event(ctx, event, idKey(t.ID), t, causedBy(m.Envelope, event)...)
	return err
}

func (s *Service) templateUpdate(ctx context.Context, m *bus.Msg) error {
	var req schemas.LauncherTemplateUpdate
	if err := decode(m, &req); err != nil {
		return err
	}
	admin, err := s.fromAdmin(ctx, m)
	if err != nil {
		return err
	}
	if _, err := s.parseTemplate(req.Template, admin); err != nil {
		return refuse(&req.ID, "template %d: %v", req.ID, err)
	}
	t, _, err := s.templates.Update(ctx, req.ID, func(t *schemas.VMTemplate) error {
		// The owner stays; who wrote the text decides its attributes.
		t.Template, t.UpdatedAt, t.AdminAttributes = req.Template, now(), admin
		return nil
	})
	if errors.Is(err, kvstore.ErrNotFound) {
		return missing(&req.ID, "template %d does not exist", req.ID)
	}
	if err != nil {
		return err
	}
	return s.emitTemplate(ctx, m, schemas.EventLauncherTemplateUpdated, t)
}

func (s *Service) templateDelete(ctx context.Context, m *bus.Msg) error {
	var req schemas.LauncherTemplateDelete
	if err := decode(m, &req); err != nil {
		return err
	}
	t, _, err := s.templates.Get(ctx, req.ID)
	if errors.Is(err, kvstore.ErrNotFound) {
		if m.Delivered > 1 { // the first delivery deleted it
			return nil
		}
		return missing(&req.ID, "template %d does not exist", req.ID)
	}
	if err != nil {
		return err
	}
	if err := s.templates.Purge(ctx, t.ID); err != nil {
		return err
	}
	if err := s.templates.ReleaseName(ctx, kvstore.Name{t.Name}, t.ID); err != nil {
		return err
	}
	ev := schemas.LauncherTemplateDeleted{ID: t.ID, Name: t.Name}
	_, err = s.bus.Event(ctx, schemas.EventLauncherTemplateDeleted, idKey(t.ID), ev, causedBy(m.Envelope, schemas.EventLauncherTemplateDeleted)...)
	return err
}

// templateChmod changes a template's bits; authorize checked manage, and
// the admin bits need admin (acl.ChmodLevel).
func (s *Service) templateChmod(ctx context.Context, m *bus.Msg) error {
	var req schemas.LauncherTemplateChmod
	if err := decode(m, &req); err != nil {
		return err
	}
	perms, err := acl.ParseOctal(req.Permissions)
	if err != nil {
		return refuse(&req.ID, "%v", err)
	}
	return s.changeTemplate(ctx, m, req.ID, func(t *schemas.VMTemplate) error {
		if acl.ChmodLevel(templateObject(t).Perms, perms) == acl.Admin && bus.UserOf(m) != "" {
			u, _, err := s.senderOf(ctx, m)
			if err != nil {
				return err
			}
			if err := acl.Check(u, templateObject(t), acl.Admin, m.Name+" of the admin bits"); err != nil {
				return &refusal{id: &req.ID, err: bus.WithCode(schemas.CodeForbidden, err)}
			}
		}
		t.Permissions = perms.Octal()
		return nil
	})
}

// templateChown gives a template to another user (and group); authorize
// checked admin. The user and the group must exist in the catalog.
func (s *Service) templateChown(ctx context.Context, m *bus.Msg) error {
	var req schemas.LauncherTemplateChown
	if err := decode(m, &req); err != nil {
		return err
	}
	return s.chownTemplate(ctx, m, req.ID, req.User, req.Group)
}

// templateChgrp changes a template's group; authorize checked admin.
func (s *Service) templateChgrp(ctx context.Context, m *bus.Msg) error {
	var req schemas.LauncherTemplateChgrp
	if err := decode(m, &req); err != nil {
		return err
	}
	return s.chownTemplate(ctx, m, req.ID, "", req.Group)
}

func (s *Service) chownTemplate(ctx context.Context, m *bus.Msg, id int64, user, group string) error {
	if user != "" {
		if _, ok, err := s.userNamed(ctx, user); err != nil {
			return err
		} else if !ok {
			return refuse(&id, "user %q does not exist", user)
		}
	}
	if group != "" {
		groups, err := bus.Ask(ctx, s.bus, schemas.QryCatalogGroups, schemas.CatalogGroupsRequest{})
		if err != nil {
			return fmt.Errorf("the catalog's groups: %w", err)
		}
		if !slices.ContainsFunc(groups, func(g schemas.Group) bool { return g.Name == group }) {
			return refuse(&id, "group %q does not exist", group)
		}
	}
	return s.changeTemplate(ctx, m, id, func(t *schemas.VMTemplate) error {
		if user != "" {
			t.User = user
		}
		if group != "" {
			t.Group = group
		}
		return nil
	})
}

// changeTemplate applies fn to template id and announces it
// (template-updated), changed or not: the sender waits for the answer.
func (s *Service) changeTemplate(ctx context.Context, m *bus.Msg, id int64, fn func(*schemas.VMTemplate) error) error {
	t, _, err := s.templates.Update(ctx, id, func(t *schemas.VMTemplate) error {
		if err := fn(t); err != nil {
			return err
		}
		t.UpdatedAt = now()
		return nil
	})
	if errors.Is(err, kvstore.ErrNotFound) {
		return missing(&id, "template %d does not exist", id)
	}
	if err != nil {
		return err
	}
	return s.emitTemplate(ctx, m, schemas.EventLauncherTemplateUpdated, t)
}

// findTemplate resolves a template by ID or name (for queries).
func (s *Service) findTemplate(ctx context.Context, id *int64, name string) (*schemas.VMTemplate, error) {
	return bus.ByIDOrName("template", id, name,
		func(id int64) (*schemas.VMTemplate, error) {
			t, _, err := s.templates.Get(ctx, id)
			return t, err
		},
		func(name string) (*schemas.VMTemplate, error) {
			tid, err := s.templates.LookupName(ctx, kvstore.Name{name})
			if err != nil {
				return nil, err
			}
			t, _, err := s.templates.Get(ctx, tid)
			if err == nil && t.Name != name { // the index entry of a crash leftover
				return nil, kvstore.ErrNotFound
			}
			return t, err
		},
		kvstore.ErrNotFound)
}
