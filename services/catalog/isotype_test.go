package catalog

import (
	"testing"

	"github.com/slipway/slipway/schemas"
)

// TestTypeByFormat: an ISO input is a CDROM unless the create named a
// type; other inputs keep theirs, and so does an ISO stored converted.
func TestTypeByFormat(t *testing.T) {
	iso := schemas.ConverterConverted{Format: schemas.DiskFormatISO, DetectedFormat: schemas.DiskFormatISO}
	isoAsQcow2 := schemas.ConverterConverted{Format: schemas.DiskFormatQcow2, DetectedFormat: schemas.DiskFormatISO}
	raw := schemas.ConverterConverted{Format: schemas.DiskFormatRaw, DetectedFormat: schemas.DiskFormatRaw}
	for _, c := range []struct {
		name     string
		typ      schemas.ImageType
		res      schemas.ConverterConverted
		byFormat bool
		want     schemas.ImageType
	}{
		{"iso, no type given", schemas.ImageTypeOS, iso, true, schemas.ImageTypeCDROM},
		{"iso stored as qcow2, no type given", schemas.ImageTypeOS, isoAsQcow2, true, schemas.ImageTypeCDROM},
		{"iso, OS given", schemas.ImageTypeOS, iso, false, schemas.ImageTypeOS},
		{"iso, DATABLOCK given", schemas.ImageTypeDatablock, iso, false, schemas.ImageTypeDatablock},
		{"raw, no type given", schemas.ImageTypeOS, raw, true, schemas.ImageTypeOS},
	} {
		if got := typeByFormat(c.typ, c.res, c.byFormat); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}
