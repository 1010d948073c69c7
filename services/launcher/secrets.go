package launcher

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/sealbox"
	"github.com/slipway/slipway/schemas"
)

// LUKSSecretAttr is the image attribute naming a LUKS image's secret in
// crypto-luks.
const LUKSSecretAttr = schemas.AttrLUKSSecret

// secretRequest and secretAnswer are crypto-luks' secret query: the
// passphrase comes back sealed to a key pair made for this one request, so
// it never crosses NATS in clear.
type secretRequest struct {
	Secret    string `json:"secret"`
	PublicKey string `json:"public_key"`
}

type secretAnswer struct {
	Sealed string `json:"sealed"`
}

// writePassphrase fetches the passphrase of a LUKS image and writes it to
// path (mode 0600), the file QEMU's secret object reads.
func (s *Service) writePassphrase(ctx context.Context, img *schemas.Image, path string) error {
	uuid := img.Attributes[LUKSSecretAttr]
	if uuid == "" {
		return fmt.Errorf("image %d (%s) is LUKS-encrypted but has no %s attribute: its passphrase cannot be found", img.ID, img.Name, LUKSSecretAttr)
	}
	priv, err := sealbox.GenerateKey()
	if err != nil {
		return err
	}
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	var ans secretAnswer
	req := secretRequest{Secret: uuid, PublicKey: sealbox.EncodePublicKey(priv.PublicKey())}
	if err := s.bus.Query(cctx, schemas.ServiceCryptoLUKS, schemas.QueryCryptoLUKSSecret, req, &ans); err != nil {
		var qe *bus.QueryError
		if errors.As(err, &qe) {
			return fmt.Errorf("image %d (%s): crypto-luks has no passphrase for secret %s: %s", img.ID, img.Name, uuid, qe.Description)
		}
		return fmt.Errorf("image %d (%s): ask crypto-luks for its passphrase: %w", img.ID, img.Name, err)
	}
	sealed, err := base64.StdEncoding.DecodeString(ans.Sealed)
	if err != nil {
		return fmt.Errorf("image %d: crypto-luks' sealed passphrase is not base64: %w", img.ID, err)
	}
	pass, err := sealbox.Open(priv, sealed)
	if err != nil {
		return fmt.Errorf("image %d: open the sealed passphrase: %w", img.ID, err)
	}
	defer clear(pass)
	return writeSecretFile(path, pass)
}

// writeSecretFile writes data to a new 0600 file; on error nothing is left.
func writeSecretFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}
