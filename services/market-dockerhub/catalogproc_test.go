package marketdockerhub

import (
	"os"
	"testing"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// The import tests run the real catalog, as its binary is built from this
// repository (go.work), over the harness's NATS and a real MinIO: the
// market module does not depend on the catalog's, so the service image
// builds without it.
var catalogBin = testenv.Binary{Pkg: "./services/catalog/cmd/catalog"}

// TestMain removes the catalog binary the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	catalogBin.Remove()
	os.Exit(code)
}

// startCatalog runs the catalog process against the harness's NATS and a
// MinIO of its own, until the test ends.
func (h *harness) startCatalog() {
	h.t.Helper()
	testenv.ServiceProcess(h.t, h.url, schemas.ServiceCatalog, catalogBin.Path(h.t), testenv.MinIO(h.t),
		"SLIPWAY_LOG_LEVEL=warn",
		// It signs the JWTs of the users the tests create with the keys
		// the server trusts.
		"SLIPWAY_IDENTITY_DIR="+testenv.ServerIdentityDir(h.t, h.url))
}
