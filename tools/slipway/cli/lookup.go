package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/tools/slipway/render"
)

// The lookups that many commands share: a reference to a record split
// into an ID or a name for the service that looks it up, and for images
// an ID or a name resolved to an image, one image or all of them from the
// catalog.

// idOrName reads a command line's reference to a record that its service
// looks up by ID or by name: an ID when ref is a number, else a name.
func idOrName(ref string) (id *int64, name string) {
	if n, err := strconv.ParseInt(ref, 10, 64); err == nil {
		return &n, ""
	}
	return nil, ref
}

// listImages asks the catalog for every image, in ID order.
func listImages(ctx context.Context, b *bus.Bus) ([]render.Image, error) {
	return listImagesFiltered(ctx, b, "")
}

// listImagesFiltered lists the images OpenNebula's filter flag f picks
// among those the sender may use ("": the catalog's default, all).
func listImagesFiltered(ctx context.Context, b *bus.Bus, f schemas.ListFilter) ([]render.Image, error) {
	var raw json.RawMessage
	if err := b.Query(ctx, schemas.ServiceCatalog, schemas.QueryCatalogList, schemas.CatalogListRequest{Filter: f}, &raw); err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	return decodeList(raw)
}

// decodeList accepts the list as an array or as {"images": [...]}.
func decodeList(raw json.RawMessage) ([]render.Image, error) {
	var images []render.Image
	if err := json.Unmarshal(raw, &images); err == nil {
		return images, nil
	}
	var wrapped struct {
		Images []render.Image `json:"images"`
	}
	if err := json.Unmarshal(raw, &wrapped); err != nil {
		return nil, fmt.Errorf("list images: decode the catalog's answer: %w", err)
	}
	return wrapped.Images, nil
}

// showImage asks the catalog for one image.
func showImage(ctx context.Context, b *bus.Bus, id int64) (render.Image, error) {
	var img render.Image
	if err := b.Query(ctx, schemas.ServiceCatalog, schemas.QueryCatalogShow, map[string]int64{"id": id}, &img); err != nil {
		if bus.IsNotFound(err) {
			return img, fmt.Errorf("image %d %w", id, errNoImage)
		}
		return img, fmt.Errorf("show image %d: %w", id, err)
	}
	return img, nil
}

// findImage resolves ref (an ID or a name) and asks the catalog for
// that image.
func findImage(ctx context.Context, b *bus.Bus, ref string) (render.Image, error) {
	id, err := resolve(ctx, b, ref)
	if err != nil {
		return render.Image{}, err
	}
	return showImage(ctx, b, id)
}

// errNoImage is showImage's answer for an ID the catalog does not know;
// callers match it, never its text.
var errNoImage = errors.New("does not exist")

// resolve turns an ID or a name into an image ID. A name must match
// exactly one image.
func resolve(ctx context.Context, b *bus.Bus, ref string) (int64, error) {
	if id, err := strconv.ParseInt(ref, 10, 64); err == nil {
		if id < 0 {
			return 0, fmt.Errorf("image ID %d is negative", id)
		}
		return id, nil
	}
	if strings.TrimSpace(ref) == "" {
		return 0, errors.New("empty image ID or name")
	}
	images, err := listImages(ctx, b)
	if err != nil {
		return 0, err
	}
	var ids []string
	var found int64
	for _, img := range images {
		if img.Name == ref {
			found = int64(img.ID)
			ids = append(ids, strconv.Itoa(img.ID))
		}
	}
	switch len(ids) {
	case 0:
		return 0, fmt.Errorf("no image is named %q", ref)
	case 1:
		return found, nil
	default:
		return 0, fmt.Errorf("%d images are named %q (IDs %s): use an ID", len(ids), ref, strings.Join(ids, ", "))
	}
}
