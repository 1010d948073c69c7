// Package source brings an image input (an s3:// object or an http(s)://
// URL) to a local file, safely and resumably.
//
// The bytes stream end to end: they are hashed as fetched (the checksum a
// command may declare is of these bytes), decompressed on the way when their
// magic says gzip, bzip2, xz or zstd, capped at a decompressed size so a
// compression bomb stops early, and written sparsely so runs of zeros cost
// no disk. A dropped connection resumes from the bytes already read (HTTP
// Range with If-Range, S3 ranged GET); a server that does not honour the
// range makes the fetch restart from zero rather than splice two versions
// of a file. Local paths and file:// are refused: a command must never make
// the converter read the host's files.
package source
