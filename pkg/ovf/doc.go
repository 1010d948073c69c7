// Package ovf reads what Slipway needs of an OVF package (DMTF DSP0243):
// the descriptor's file references, disks and virtual hardware, and the
// manifest (.mf) of digests.
//
// Everything it reads is untrusted. The descriptor is read with
// encoding/xml only, which defines no entities (a DOCTYPE is refused
// outright, so neither a billion-laughs expansion nor an external entity
// is ever looked at); its size and the number of its elements, files,
// disks and hardware items are capped; a file reference is a plain file
// name inside the package (CheckName), never a path, a URL or "..".
package ovf
