// Package identity gives every principal of Slipway (each service, each
// user) a NATS identity the server authenticates, and the permissions that
// identity holds. The schemas are the one source: a command's or query's
// x-slipway "senders" list is what the server lets publish it.
//
// # How a service learns who sent a command
//
// NATS does not tell a subscriber who published a message, and a field in
// the payload can say anything. So the sender is part of the subject, and
// the server only lets a principal publish with its own token:
//
//	slipway.cmd.catalog.image-delete.alice   (alice may publish this)
//	slipway.cmd.catalog.image-delete.bob     (alice may not)
//
// A command stored in JetStream keeps its subject, so the identity survives
// redelivery and replay, and a plain `nats pub` with a user's credentials
// works as the CLI does. The alternative, JWT permission templates
// ({{name()}}), would only shape what a user may publish; the service would
// still have to be told who it was. With explicit subjects the grant is
// written out in each user's JWT, readable with `nats auth` or jwt.io, and
// tested here subject by subject.
//
// # Keys
//
// An [Authority] is an operator, its system account and the SLIPWAY
// account, and a signing key of that account that issues users. It lives in
// a directory of 0600 files (slipway up's data dir, a compose secret). No
// key is compiled in. A user's seed is made where the credentials file is
// written and never leaves it: [Authority.Issue] signs a public key.
//
// Credentials are standard NATS credentials files (a user JWT and its nkey
// seed), so `nats --creds FILE` works with them. Anonymous connections are
// refused: the server trusts only the operator.
//
// # JetStream
//
// Users have no JetStream API; administrators all of it. A service gets the
// API of what schemas.JetStreamOf says is its own (its KV buckets, its
// event consumers), of its command consumer (created with its own filter in
// the subject, which the server holds the consumer's filter to) and
// STREAM.INFO of the three streams; the catalog alone creates the streams
// and forwards dead letters. [JetStream] writes the grant; the tests walk
// every action on every stream, bucket and consumer for every principal.
//
// # Inboxes
//
// Each principal receives replies on its own inbox prefix
// (_INBOX_<name>.>), which [InboxPrefix] names and the client sets with
// nats.CustomInboxPrefix; no one can subscribe to another's replies, such as
// a sealed passphrase.
package identity
