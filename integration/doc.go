// Package integration holds Slipway's end-to-end tests: the whole stack over a
// real nats-server, a real MinIO and the real qemu-img, driven through the CLI
// and the bus the way users drive it, plus checks of the deployment files.
package integration
