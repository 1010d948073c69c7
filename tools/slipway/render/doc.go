// Package render formats catalog images for people the way OpenNebula's
// oneimage does (list columns, show layout, sizes such as "2G", short
// state names such as "rdy"), and for scripts as JSON with stable keys.
//
// It only formats: it knows nothing of NATS or S3, so every layout can be
// checked by unit tests.
package render
