package bus

import (
	"context"
	"fmt"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/schemas"
)

// CatalogUser is user name as the catalog records them, with their groups,
// for a service's permission checks (package acl); ok is false for a name
// the catalog does not know. The service must be a sender of the
// catalog's user query.
//
// oneadmin needs no question: the catalog makes it in the oneadmin group
// and never deletes it nor takes it out of that group.
func CatalogUser(ctx context.Context, b *Bus, name string) (u acl.User, ok bool, err error) {
	if name == acl.AdminUser {
		return acl.User{Name: name, Groups: []string{acl.AdminGroup}}, true, nil
	}
	rec, err := Ask(ctx, b, schemas.QryCatalogUser, schemas.CatalogUserRequest{Name: name})
	switch {
	case IsNotFound(err):
		return acl.User{Name: name}, false, nil
	case err != nil:
		return acl.User{}, false, fmt.Errorf("the catalog's record of user %s: %w", name, err)
	}
	return acl.User{Name: rec.Name, Groups: rec.Groups}, true, nil
}
