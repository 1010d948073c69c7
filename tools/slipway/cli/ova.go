package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/tools/slipway/render"
)

// The attributes the catalog sets on an OVA import's images (its AttrOVA,
// AttrOVADisks, AttrOVATemplate and AttrOVATemplateError).
const (
	attrOVA              = "OVA"                // on every disk's image: the first image's ID
	attrOVADisks         = "OVA_DISKS"          // how many disks, so images, the OVA has
	attrOVATemplate      = "OVA_TEMPLATE"       // on the first image: the VM template's ID
	attrOVATemplateError = "OVA_TEMPLATE_ERROR" // on the first image: why the launcher refused it
)

// ovaPoll is how often followOVA asks again for what the catalog has not
// recorded yet (a disk's image, the launcher's answer). Both were asked
// for when the OVA was read, long before its first image is READY, so the
// wait for them is bounded (defaultActionTimeout) even with no --timeout.
const ovaPoll = 250 * time.Millisecond

// followOVA follows every image of an OVA import to READY or ERROR: img
// (the first disk), then the image of each further disk, which the
// catalog creates when it has read the OVA (they carry OVA = img's ID);
// then it says what became of the VM template. It fails if any image
// ends in ERROR or the launcher refused the template.
func (c *client) followOVA(ctx context.Context, b *bus.Bus, w *watcher, img render.Image) error {
	failed := c.follow(ctx, b, w, img)
	first, err := showImage(ctx, b, int64(img.ID))
	if err != nil {
		return errors.Join(failed, err)
	}
	disks, _ := strconv.Atoi(first.Attributes[attrOVADisks])
	if disks == 0 {
		return failed // the OVA was not read: no other image, no template
	}
	others, err := ovaDiskImages(ctx, b, img.ID, disks-1)
	if err != nil {
		return errors.Join(failed, err)
	}
	failed = errors.Join(failed, c.followImages(ctx, b, w, others))
	return errors.Join(failed, c.ovaTemplate(ctx, b, img.ID))
}

// ovaDiskImages waits until the catalog lists the n further disk images
// of the OVA imported as image first, and returns their IDs in order.
func ovaDiskImages(ctx context.Context, b *bus.Bus, first, n int) ([]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, defaultActionTimeout)
	defer cancel()
	tick := time.NewTicker(ovaPoll)
	defer tick.Stop()
	for {
		images, err := listImages(ctx, b)
		if err != nil {
			return nil, err
		}
		var ids []int64
		for _, im := range images {
			if im.ID != first && im.Attributes[attrOVA] == strconv.Itoa(first) {
				ids = append(ids, int64(im.ID))
			}
		}
		if len(ids) >= n {
			slices.Sort(ids)
			return ids, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("image %d: the OVA has %d disks, but the catalog lists %d of their images (%w); see slipway image list", first, n+1, len(ids)+1, ctx.Err())
		case <-tick.C:
		}
	}
}

// ovaTemplate waits for the launcher's answer to the OVA's VM template,
// as the catalog records it on image first, and reports it: the
// template's ID, or an error saying why it was refused.
func (c *client) ovaTemplate(ctx context.Context, b *bus.Bus, first int) error {
	ctx, cancel := context.WithTimeout(ctx, defaultActionTimeout)
	defer cancel()
	tick := time.NewTicker(ovaPoll)
	defer tick.Stop()
	for {
		img, err := showImage(ctx, b, int64(first))
		if err != nil {
			return err
		}
		if why := img.Attributes[attrOVATemplateError]; why != "" {
			fmt.Fprintf(c.io.err, "image %d: VM template refused: %s\n", first, why)
			return &ExitError{Code: 1}
		}
		if id := img.Attributes[attrOVATemplate]; id != "" {
			fmt.Fprintf(c.io.out, "VM template %s (ID %s) names the OVA's disks\n", img.Name, id)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("image %d: the launcher has not answered the OVA's VM template yet (%w): see slipway template show %s", first, ctx.Err(), img.Name)
		case <-tick.C:
		}
	}
}
