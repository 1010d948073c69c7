// Package up runs the whole of Slipway in one process, for a laptop or a
// demo: an embedded nats-server with JetStream storing under the data
// directory, a MinIO child process (unless an S3 endpoint is given), the
// bus streams, and every implemented service, each on its own NATS
// connection exactly as if it ran as its own binary.
//
// Start brings the stack up and returns once it serves; Stop takes it down
// in the reverse order (services drain, NATS shuts down, MinIO stops). Run
// does both around a context, for `slipway up`.
package up
