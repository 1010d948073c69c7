// Package converter is Slipway's converter service: it consumes the
// converter.import and converter.create-blank commands, brings untrusted
// disk images in (package pkg/fetch), inspects them before anything else
// parses them (pkg/inspect), converts them with a confined qemu-img
// (pkg/qemuimg) or makes empty disks (package blank), stores the result
// in the blob store and answers with converted, progress and failed events.
//
// A job's failure is terminal when retrying cannot fix it (a refused image,
// a checksum mismatch, a 4xx answer, a bad command): the command is
// terminated and a failed event says why. Other failures (network, S3 5xx,
// a full disk) return an error so JetStream redelivers the command; the
// last delivery publishes a failed event too. Every job removes its
// temporary files, and a failed job removes its destination object.
package converter
