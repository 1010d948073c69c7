// Package fetch brings remote data (an s3:// object or an http(s):// URL)
// in, safely and resumably: to a local file (File, the converter's
// imports) or as a stream read while it arrives (Open, the builder's
// rootfs tarballs).
//
// The bytes stream end to end: they are hashed as fetched with every
// algorithm a checksum names (md5, sha256, sha512; sha256 always), in one
// pass — the checksums a command declares are of these bytes —
// decompressed on the way when their magic says gzip, bzip2, xz or zstd,
// capped at a decompressed size so a compression bomb stops early, and (to
// a file) written sparsely so runs of zeros cost no disk. A dropped
// connection resumes from the bytes already read (HTTP Range with
// If-Range, S3 ranged GET); a server that does not honour the range makes
// a file fetch restart from zero rather than splice two versions of a
// file, and fails a stream, which cannot restart. A connection idle too
// long is abandoned and resumed. Local paths and file:// are refused: a
// command must never make a service read the host's files; http(s)
// addresses go through a netguard policy.
package fetch
