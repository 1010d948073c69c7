package catalog

import "github.com/slipway/slipway/schemas"

// typeByFormat is the type an imported image gets once the converter has
// inspected its input: an ISO 9660 or UDF input whose create named no type
// is a CDROM, as OpenNebula types ISOs, whatever format it is stored in.
// A type the create named is kept whatever the data (an installer ISO
// deliberately registered as OS stays OS).
func typeByFormat(current schemas.ImageType, res schemas.ConverterConverted, byFormat bool) schemas.ImageType {
	input := res.DetectedFormat
	if input == "" {
		input = res.Format
	}
	if byFormat && current == schemas.ImageTypeOS && input == schemas.DiskFormatISO {
		return schemas.ImageTypeCDROM
	}
	return current
}
