package schemas

// Names of the contract that no schema file's name gives; the service,
// command, event and query names are generated (types_gen.go).

// Image attributes Slipway itself sets and reads.
const (
	// AttrLUKSSecret is the UUID of a LUKS image's secret (crypto-luks),
	// set by the catalog when an encryption lands, read by the launcher to
	// unlock the disk and by the CLI.
	AttrLUKSSecret = "LUKS_SECRET"
	// AttrEncryptedFrom is the ID of the image a LUKS image was encrypted from.
	AttrEncryptedFrom = "ENCRYPTED_FROM"
	// AttrMarketplace and AttrMarketplaceApp name the marketplace and the
	// app an image was imported from (set by the marketplace services);
	// the catalog names them in the image's error when its import fails.
	AttrMarketplace    = "MARKETPLACE"
	AttrMarketplaceApp = "MARKETPLACE_APP"
)
