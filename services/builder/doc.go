// Package builder is Slipway's builder service. It consumes
// slipway.cmd.builder.build: it pulls a pinned container image (every layer
// verified, in parallel), and either stores the one disk file the image
// carries (RancherVM /base_image/, KubeVirt containerDisk /disk/), or
// flattens the layers with its own confined extractor, injects Slipway's
// guest init and the container's config at /.slipway/, builds an ext2/3/4 or
// xfs filesystem without mounts or root, and stores it as a raw disk. It
// reports progress, built and failed events and keeps nothing durable: a
// job's whole state is its command, which JetStream redelivers if the
// builder dies.
//
// The pieces live in sub-packages: tree (the flattened filesystem's
// metadata), flatten (the layer extractor), fsimage (mkfs without mounts),
// guestinit and cmd/slipway-init (the guest init). cmd/builder is the
// binary.
package builder
