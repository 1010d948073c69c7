// Package testenv starts the real components Slipway's tests run against: an
// in-process nats-server with JetStream and a MinIO server process. It also
// holds the set-up the services' tests share: a service's bus, a client bus
// and a blob store on them (NewService), test logs (Logger), stand-in
// programs (Script) and repository files a test needs (RepoFile).
//
// The NATS server of NATS authenticates, as `slipway up`'s does: Connect
// gives a service its own credentials and a client those of the principal
// that sends its commands (oneadmin, or the catalog for the workers);
// NewUser connects with the credentials the catalog issued; Dial and
// WitnessBus connect a witness that may do anything, which only tests
// have.
//
// The starters that take no testing.TB (NewNATSServer, StartMinIO, FreePort,
// RepoRoot) are also usable outside tests, e.g. by `slipway up` or a TestMain
// that shares one MinIO between the tests of a package.
package testenv
