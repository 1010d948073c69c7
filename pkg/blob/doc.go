// Package blob stores image data in an S3-compatible object store (MinIO in
// tests and in `slipway up`) through minio-go.
//
// Uploads stream: the SHA-256 of the data is computed on the way through,
// data larger than a part goes up as a multipart upload whose next parts
// are read while the ones before them are sent, several at once
// (Config.PartsInFlight), through a bounded number of part-sized buffers,
// so that memory stays near a few parts whatever the image size; a failed
// or rejected upload leaves neither an object nor an incomplete multipart
// upload behind.
package blob
