// Package cli is the slipway command line: `slipway up` (the whole stack
// in one process), `slipway image …` (oneimage's verbs over the bus) and
// `slipway version`.
//
// Execute runs one command line in-process with its own output streams,
// so tests drive the real CLI without building a binary.
package cli
