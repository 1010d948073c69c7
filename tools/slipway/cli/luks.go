package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/sealbox"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/tools/slipway/render"
)

// cryptoLuks is the crypto-luks service's name on the bus.
const cryptoLuks = schemas.ServiceCryptoLUKS

// attrLUKSSecret is the image attribute naming its crypto-luks secret.
const attrLUKSSecret = schemas.AttrLUKSSecret

// defaultSlotTimeout bounds a key-slot change: crypto-luks downloads the
// whole volume, amends it and uploads it again.
const defaultSlotTimeout = 30 * time.Minute

func newLuksCmd(c *client) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "luks",
		Short: "LUKS-encrypted images: encrypt, empty volumes, secrets, key slots, key rotation",
		Long: `LUKS-encrypted images, made and kept by the crypto-luks service. Their
passphrases are generated (32 random bytes), stored only envelope-encrypted
and handed out sealed to a one-time key; an image names its secret in the
LUKS_SECRET attribute.`,
		RunE: unknownSubcommand,
	}
	cmd.AddCommand(newLuksEncryptCmd(c), newLuksCreateCmd(c), newLuksSecretCmd(c), newLuksSlotCmd(c),
		newLuksRotateCmd(c), newLuksRotateKEKCmd(c))
	return cmd
}

func newLuksEncryptCmd(c *client) *cobra.Command {
	var (
		name, description string
		timeout           time.Duration
	)
	cmd := &cobra.Command{
		Use:   "encrypt ID|NAME --name NAME",
		Short: "Encrypt an image into a new LUKS image; prints its ID and waits until it is READY",
		Long: `Encrypt an image into a new image (the source's type and datastore, format
luks, attributes LUKS_SECRET and ENCRYPTED_FROM). The source must be READY,
USED or DISABLED and stays as it is. Prints "ID: N" once the catalog has
registered the new image, then follows the encryption and exits non-zero if
the image ends in ERROR.`,
		Example: `  slipway luks encrypt debian --name debian-luks`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(name) == "" {
				return &ExitError{Code: 2, Err: errors.New("luks encrypt: --name is required")}
			}
			ctx := cmd.Context()
			return withFound(ctx, c, resolve, args[0], func(b *bus.Bus, id int64) error {
				req := schemas.ImageEncrypt{ID: id, Name: name, Description: description}
				return c.newImage(ctx, b, "luks", schemas.CommandCatalogImageEncrypt, req, timeout)
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "name of the new image (required)")
	cmd.Flags().StringVar(&description, "description", "", "free text for the new image")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up waiting after this long (0: no limit)")
	return cmd
}

func newLuksCreateCmd(c *client) *cobra.Command {
	var (
		req     schemas.ImageCreate
		typ     string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "create --size MiB --name NAME",
		Short: "Create an empty LUKS volume (a DATABLOCK); prints its ID and waits until it is READY",
		Example: `  slipway luks create --size 1024 --name scratch-luks
  slipway luks create --size 512 --name data --persistent`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case strings.TrimSpace(req.Name) == "":
				return &ExitError{Code: 2, Err: errors.New("luks create: --name is required")}
			case req.SizeMiB <= 0:
				return &ExitError{Code: 2, Err: errors.New("luks create: --size MiB is required and must be positive")}
			}
			req.Type, req.LUKS = schemas.ImageType(strings.ToUpper(typ)), true
			ctx := cmd.Context()
			return c.withBus(ctx, func(b *bus.Bus) error {
				return c.newImage(ctx, b, "luks", schemas.CommandCatalogImageCreate, req, timeout)
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&req.Name, "name", "", "image name (required)")
	fl.Int64Var(&req.SizeMiB, "size", 0, "size in MiB (required)")
	fl.StringVar(&typ, "type", "DATABLOCK", "image type: DATABLOCK or OS")
	fl.StringVarP(&req.Datastore, "datastore", "d", "default", "datastore")
	fl.StringVar(&req.Description, "description", "", "free text")
	fl.BoolVar(&req.Persistent, "persistent", false, "make the image persistent")
	fl.DurationVar(&timeout, "timeout", 0, "give up waiting after this long (0: no limit)")
	return cmd
}

// newImage sends a catalog command that makes a new image (a LUKS image,
// a clone), prints its ID as soon as the catalog registers it and follows
// it to READY or ERROR, as image create --wait does; what names the
// command in errors.
func (c *client) newImage(ctx context.Context, b *bus.Bus, what, verb string, req any, timeout time.Duration) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	// The catalog republishes crypto-luks's progress.
	w, env, err := sendWatched(ctx, b, "catalog.>", schemas.ServiceCatalog, verb, req)
	if err != nil {
		return err
	}
	defer w.close()
	acceptCtx, cancel := context.WithTimeout(ctx, defaultActionTimeout)
	defer cancel()
	ev, err := awaitOutcome(acceptCtx, w, env.CorrelationID, func(ev event) bool { return ev.Name == schemas.EventCatalogImageCreated }, nil, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	var img render.Image
	if err := ev.decode(&img); err != nil {
		return err
	}
	fmt.Fprintf(c.io.out, "ID: %d\n", img.ID)
	return c.follow(ctx, b, w, img)
}

// findLuksImage resolves ref to a LUKS image: one with a secret, which
// luksSecret reads.
func findLuksImage(ctx context.Context, b *bus.Bus, ref string) (render.Image, error) {
	img, err := findImage(ctx, b, ref)
	if err != nil {
		return img, err
	}
	if luksSecret(img) == "" {
		return img, fmt.Errorf("image %d (%s) is not a LUKS image: it has no %s attribute", img.ID, img.Name, attrLUKSSecret)
	}
	return img, nil
}

// luksSecret is the ID of the secret crypto-luks holds for img.
func luksSecret(img render.Image) string { return img.Attributes[attrLUKSSecret] }

// slotsInfo is crypto-luks's answer to the slots query.
type slotsInfo struct {
	Secret  string `json:"secret"`
	ImageID int64  `json:"image_id"`
	State   string `json:"state"`
	KEKID   string `json:"kek_id"`
	Primary int    `json:"primary"`
	Slots   []struct {
		Slot      int       `json:"slot"`
		Primary   bool      `json:"primary"`
		CreatedAt time.Time `json:"created_at"`
	} `json:"slots"`
	Pending bool `json:"pending"`
}

func newLuksSecretCmd(c *client) *cobra.Command {
	var (
		libvirt, passphrase bool
		volume              string
	)
	cmd := &cobra.Command{
		Use:   "secret ID|NAME [--libvirt-xml] [--passphrase]",
		Short: "Show an image's LUKS secret; its libvirt secret XML; its passphrase",
		Long: `Without flags: the image's secret UUID (its LUKS_SECRET), key-encryption key
and key slots, never the passphrase.

--libvirt-xml prints the libvirt secret for operators (usage type volume,
the LUKS_SECRET UUID) on standard output, and the virsh secret-define /
secret-set-value steps on standard error, so the XML can go to a file.

--passphrase prints the passphrase, without a newline, fetched sealed to a
one-time key; redirect it into a file readable only by you. With
--libvirt-xml as well, a shell script that defines the secret and sets its
value (through a 0600 file, never a command line) is printed instead.`,
		Example: `  slipway luks secret 7 --libvirt-xml > secret.xml
  (umask 077; slipway luks secret 7 --passphrase > passphrase)
  slipway luks secret 7 --libvirt-xml --passphrase | ssh host sh`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return withFound(ctx, c, findLuksImage, args[0], func(b *bus.Bus, img render.Image) error {
				secret := luksSecret(img)
				var pass []byte
				var err error
				if passphrase {
					if pass, err = fetchPassphrase(ctx, b, secret, int64(img.ID)); err != nil {
						return err
					}
				}
				if volume == "" {
					volume = fmt.Sprintf("/var/lib/libvirt/images/slipway-%d.luks", img.ID)
				}
				sec := libvirtSecret{UUID: secret, ImageID: img.ID, Name: img.Name, Volume: volume}
				switch {
				case libvirt && passphrase:
					_, err = io.WriteString(c.io.out, sec.Script(pass))
				case libvirt:
					if _, err = io.WriteString(c.io.out, sec.XML()); err == nil {
						_, err = io.WriteString(c.io.err, sec.Steps())
					}
				case passphrase:
					_, err = c.io.out.Write(pass)
				default:
					err = c.showSecret(ctx, b, img, secret)
				}
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&libvirt, "libvirt-xml", false, "print the libvirt secret XML (and the virsh steps)")
	cmd.Flags().BoolVar(&passphrase, "passphrase", false, "print the passphrase itself")
	cmd.Flags().StringVar(&volume, "volume", "", "path of the volume on the libvirt host, for the secret's usage (default /var/lib/libvirt/images/slipway-ID.luks)")
	return cmd
}

// fetchPassphrase asks crypto-luks for a passphrase sealed to a key made
// for this one request and opens it.
func fetchPassphrase(ctx context.Context, b *bus.Bus, secret string, imageID int64) ([]byte, error) {
	key, err := sealbox.GenerateKey()
	if err != nil {
		return nil, err
	}
	req := map[string]any{"secret": secret, "image_id": imageID, "public_key": sealbox.EncodePublicKey(key.PublicKey())}
	var rep struct {
		Sealed string `json:"sealed"`
	}
	if err := b.Query(ctx, cryptoLuks, schemas.QueryCryptoLUKSSecret, req, &rep); err != nil {
		return nil, fmt.Errorf("secret %s of image %d: %w", secret, imageID, err)
	}
	box, err := base64.StdEncoding.DecodeString(rep.Sealed)
	if err != nil {
		return nil, fmt.Errorf("secret %s: the sealed answer is not base64: %w", secret, err)
	}
	pass, err := sealbox.Open(key, box)
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", secret, err)
	}
	return pass, nil
}

func (c *client) showSecret(ctx context.Context, b *bus.Bus, img render.Image, secret string) error {
	info, err := querySlots(ctx, b, secret)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.io.out, 0, 8, 1, ' ', 0)
	fmt.Fprintf(tw, "IMAGE\t%d (%s)\n", img.ID, img.Name)
	fmt.Fprintf(tw, "SECRET\t%s\n", info.Secret)
	fmt.Fprintf(tw, "KEK\t%s\n", info.KEKID)
	fmt.Fprintf(tw, "SLOTS\t%s (primary %d)\n", slotNumbers(info), info.Primary)
	if info.Pending {
		fmt.Fprintf(tw, "PENDING\ta key-slot change was interrupted; the next one settles it\n")
	}
	return tw.Flush()
}

func querySlots(ctx context.Context, b *bus.Bus, secret string) (slotsInfo, error) {
	var info slotsInfo
	if err := b.Query(ctx, cryptoLuks, schemas.QueryCryptoLUKSSlots, map[string]string{"secret": secret}, &info); err != nil {
		return info, fmt.Errorf("secret %s: %w", secret, err)
	}
	return info, nil
}

func slotNumbers(info slotsInfo) string {
	s := make([]string, len(info.Slots))
	for i, sl := range info.Slots {
		s[i] = strconv.Itoa(sl.Slot)
	}
	return strings.Join(s, ", ")
}

// libvirtSecret is what an operator defines on a libvirt host so QEMU
// there can open a Slipway LUKS image.
type libvirtSecret struct {
	UUID    string
	ImageID int
	Name    string
	Volume  string
}

// XML is the secret's definition: private (libvirt never shows its value
// again), not ephemeral, used by the volume.
func (s libvirtSecret) XML() string {
	return fmt.Sprintf(`<secret ephemeral='no' private='yes'>
  <uuid>%s</uuid>
  <description>%s</description>
  <usage type='volume'>
    <volume>%s</volume>
  </usage>
</secret>
`, html.EscapeString(s.UUID), html.EscapeString(fmt.Sprintf("Slipway image %d (%s): LUKS passphrase", s.ImageID, s.Name)),
		html.EscapeString(s.Volume))
}

func (s libvirtSecret) files() (xml, pass string) {
	return "slipway-luks-" + s.UUID + ".xml", "slipway-luks-" + s.UUID + ".pass"
}

// Steps are the virsh commands, as comments for a person to run: the
// passphrase goes through a 0600 file, never a command line.
func (s libvirtSecret) Steps() string {
	xml, pass := s.files()
	return fmt.Sprintf(`# On every libvirt host that runs image %[1]d:
#   slipway luks secret %[1]d --libvirt-xml > %[2]s
#   virsh -c qemu:///system secret-define %[2]s
#   (umask 077; slipway luks secret %[1]d --passphrase > %[3]s)
#   virsh -c qemu:///system secret-set-value --secret %[4]s --file %[3]s --plain
#   rm -f %[3]s
# A disk of a domain then opens with:
#   <encryption format='luks'><secret type='passphrase' uuid='%[4]s'/></encryption>
`, s.ImageID, xml, pass, s.UUID)
}

// Script defines the secret and sets its value on the host it runs on.
// The passphrase is written by printf, a shell builtin, so it never is an
// argument of a process.
func (s libvirtSecret) Script(pass []byte) string {
	xml, passFile := s.files()
	return fmt.Sprintf(`#!/bin/sh
# libvirt secret of Slipway image %d (%s), LUKS_SECRET=%s
set -eu
umask 077
cat > %s <<'SLIPWAY_EOF'
%sSLIPWAY_EOF
virsh -c qemu:///system secret-define %s
printf '%%s' '%s' > %s
virsh -c qemu:///system secret-set-value --secret %s --file %s --plain
rm -f %s %s
`, s.ImageID, s.Name, s.UUID, xml, s.XML(), xml, shellQuoted(pass), passFile, s.UUID, passFile, passFile, xml)
}

// shellQuoted makes pass safe inside single quotes (Slipway's passphrases
// are base64url and need nothing; an operator's own might).
func shellQuoted(pass []byte) string {
	return strings.ReplaceAll(string(pass), "'", `'\''`)
}

func newLuksSlotCmd(c *client) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "slot",
		Short: "List, add and remove key slots of a LUKS image",
		RunE:  unknownSubcommand,
	}
	list := &cobra.Command{
		Use:   "list ID|NAME",
		Short: "List the key slots crypto-luks holds a passphrase for",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return withFound(ctx, c, findLuksImage, args[0], func(b *bus.Bus, img render.Image) error {
				info, err := querySlots(ctx, b, luksSecret(img))
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(c.io.out, 0, 8, 2, ' ', 0)
				fmt.Fprintln(tw, "SLOT\tPRIMARY\tCREATED")
				for _, sl := range info.Slots {
					fmt.Fprintf(tw, "%d\t%s\t%s\n", sl.Slot, render.YesNo(sl.Primary), sl.CreatedAt.Local().Format("01/02 15:04:05"))
				}
				return tw.Flush()
			})
		},
	}
	var (
		addSlot, removeSlot int
		timeout             time.Duration
	)
	add := &cobra.Command{
		Use:   "add ID|NAME [--slot N]",
		Short: "Add a key slot with a new, generated passphrase",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var slot *int64
			if cmd.Flags().Changed("slot") {
				n := int64(addSlot)
				slot = &n
			}
			return c.slotCommand(cmd.Context(), args[0], schemas.CommandCatalogImageSlotAdd, timeout, func(id int64) any {
				return schemas.ImageSlotAdd{ID: id, Slot: slot}
			})
		},
	}
	add.Flags().IntVar(&addSlot, "slot", 0, "key slot to fill, 0 to 7 (default: the lowest free one)")
	add.Flags().DurationVar(&timeout, "timeout", defaultSlotTimeout, "how long to wait for crypto-luks")
	remove := &cobra.Command{
		Use:   "remove ID|NAME --slot N",
		Short: "Erase a key slot (never the last one)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("slot") {
				return &ExitError{Code: 2, Err: errors.New("luks slot remove: --slot N is required")}
			}
			return c.slotCommand(cmd.Context(), args[0], schemas.CommandCatalogImageSlotRemove, timeout, func(id int64) any {
				return schemas.ImageSlotRemove{ID: id, Slot: int64(removeSlot)}
			})
		},
	}
	remove.Flags().IntVar(&removeSlot, "slot", -1, "key slot to erase, 0 to 7")
	remove.Flags().DurationVar(&timeout, "timeout", defaultSlotTimeout, "how long to wait for crypto-luks")
	cmd.AddCommand(list, add, remove)
	return cmd
}

func newLuksRotateCmd(c *client) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "rotate ID|NAME",
		Short: "Give a LUKS image a new passphrase (new key slot, old primary slot erased)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.slotCommand(cmd.Context(), args[0], schemas.CommandCatalogImageSlotRotate, timeout, func(id int64) any {
				return schemas.ImageSlotRotate{ID: id}
			})
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", defaultSlotTimeout, "how long to wait for crypto-luks")
	return cmd
}

// slotCommand sends a key-slot command about an image to the catalog,
// which locks the image while crypto-luks rewrites its blob, and prints
// the slots it reports after the change.
func (c *client) slotCommand(ctx context.Context, ref, verb string, timeout time.Duration, payload func(id int64) any) error {
	return withFound(ctx, c, findLuksImage, ref, func(b *bus.Bus, img render.Image) error {
		return c.changeSlots(ctx, b, img, verb, timeout, payload)
	})
}

// changeSlots sends the key-slot command verb about img and prints the
// slots the catalog reports after the change.
func (c *client) changeSlots(ctx context.Context, b *bus.Bus, img render.Image, verb string, timeout time.Duration, payload func(id int64) any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	m, err := b.Call(ctx, schemas.ServiceCatalog, verb, payload(int64(img.ID)), []string{schemas.EventCatalogImageSlotsChanged}, bus.WithSubject(strconv.Itoa(img.ID)))
	if err != nil {
		return fmt.Errorf("image %d: %s: %w", img.ID, verb, callFailure(err))
	}
	var ch schemas.ImageSlotsChanged
	if err := json.Unmarshal(m.Data, &ch); err != nil {
		return err
	}
	fmt.Fprintln(c.io.out, describeSlots(ch))
	return nil
}

func describeSlots(ch schemas.ImageSlotsChanged) string {
	join := func(v []int64) string {
		s := make([]string, len(v))
		for i, n := range v {
			s[i] = strconv.FormatInt(n, 10)
		}
		return strings.Join(s, ", ")
	}
	msg := fmt.Sprintf("image %d: key slots %s (primary %d)", ch.ID, join(ch.Slots), ch.Primary)
	if len(ch.Added) > 0 {
		msg += "; added " + join(ch.Added)
	}
	if len(ch.Removed) > 0 {
		msg += "; removed " + join(ch.Removed)
	}
	return msg
}

func newLuksRotateKEKCmd(c *client) *cobra.Command {
	var (
		expect  string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "rotate-kek",
		Short: "Re-wrap every data key with crypto-luks's current key-encryption key",
		Long: `Re-wrap every secret's data key with the key-encryption key crypto-luks now
runs with. First give crypto-luks the new KEK (SLIPWAY_LUKS_KEK_FILE) and the
old one (SLIPWAY_LUKS_OLD_KEK_FILES) and restart it; after this command the old
KEK is no longer needed. Passphrases and LUKS images do not change.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withBus(cmd.Context(), func(b *bus.Bus) error {
				ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
				defer cancel()
				m, err := b.Call(ctx, cryptoLuks, schemas.CommandCryptoLUKSRotateKek, schemas.CryptoLuksRotateKEK{ExpectKekID: expect}, []string{schemas.EventCryptoLUKSKekRotated})
				if err != nil {
					return fmt.Errorf("rotate-kek: %w", callFailure(err))
				}
				var ev schemas.CryptoLuksKEKRotated
				if err := json.Unmarshal(m.Data, &ev); err != nil {
					return err
				}
				fmt.Fprintf(c.io.out, "KEK %s: %d secrets, %d re-wrapped\n", ev.KekID, ev.Secrets, ev.Rewrapped)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&expect, "expect-kek", "", "refuse unless crypto-luks's current KEK has this ID")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for crypto-luks")
	return cmd
}
