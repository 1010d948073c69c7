// Package schemas is Slipway's message contract: a JSON Schema (draft 2020-12) for
// every command and event on the bus and for the request and the reply of every
// query, an AsyncAPI 3.0 document mapping subjects to those schemas, Go types
// generated from the schemas, and a validator.
//
// The schema files are the source of truth. types_gen.go is generated from them by
// ./internal/gen (run `go generate ./...` or `make gen`), and a test fails when the
// generated code is stale, so the Go types cannot drift from the schemas.
//
// A message is named by its kind ("cmd" or "evt"), its service and its name, as in
// the subject slipway.<kind>.<service>.<name>[.<id>]; its schema's $id (see [ID]) is
// what the ce-dataschema header carries. A query on slipway.api.<service>.<endpoint>
// has two: its request (kind "qry") and its reply (kind "rpl"), both named
// <service>.<endpoint>; [LookupQuery] returns the pair, and pkg/bus checks both.
package schemas

//go:generate go run ./internal/gen
