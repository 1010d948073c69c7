// Package cli is the slipway command line: `slipway up` (the whole stack
// in one process), `slipway image …` (oneimage's verbs over the bus),
// market, kernel, luks, template, vm, dead-letter and `slipway version`.
//
// Execute runs one command line in-process with its own output streams,
// so tests drive the real CLI without building a binary.
//
// A command takes a client (where NATS is, the user, the streams) unless
// it moves data through S3 (image create, image export, kernel add, up):
// those take globals, the client plus the S3 settings. The helpers that
// commands share live in files named for them: client.go (connect,
// withBus, withFound, ask), lookup.go (records by ID or name), show.go
// (the show and list commands), fields.go (show output), events.go
// (watching, sending and awaiting answers), progress.go (progress
// display).
package cli
