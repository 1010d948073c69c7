// Package inspect is Slipway's own format check for untrusted disk images.
//
// It runs before qemu-img ever opens an input. qemu-img is a large C program
// that follows references inside images (qcow2 backing files and external
// data files, VMDK extents, VHD parents, json: pseudo-filenames), so a disk
// uploaded by a stranger could make it read /etc/passwd or a neighbour's disk
// into the converted image. Inspect reads only the few header regions it
// needs, through an io.ReaderAt, with every offset bounds-checked against the
// file size, and refuses anything that references another file, uses a
// feature it does not understand, is truncated, claims an absurd virtual size
// or carries the signatures of two formats at once (a polyglot that two
// readers would interpret differently).
//
// Header layouts follow QEMU's docs/interop/qcow2.txt and block drivers and
// OpenStack oslo.utils' format_inspector, which solved the same problem.
//
// Every refusal is a *RefusedError: errors.Is(err, ErrRefused) tells the
// caller the input is bad (terminal, never retried), and errors.Is with a
// more specific sentinel (ErrBackingFile, ErrTruncated, …) tells which rule
// refused it. Any other error is an I/O error reading the input.
package inspect
