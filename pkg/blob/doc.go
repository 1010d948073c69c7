// Package blob stores image data in an S3-compatible object store (MinIO in
// tests and in `slipway up`) through minio-go.
//
// Uploads stream: the SHA-256 of the data is computed on the way through,
// streams of unknown size go up as multipart uploads with a bounded part
// size so that memory stays near one part whatever the image size, and a
// failed or rejected upload leaves neither an object nor an incomplete
// multipart upload behind.
package blob
