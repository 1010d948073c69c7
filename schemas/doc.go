// Package schemas is Slipway's message contract: a JSON Schema (draft 2020-12) for
// every command and event on the bus and for the request and the reply of every
// query, each with its x-slipway metadata (kind, owner, subject, a command's
// answering events), and what is generated from them: Go types, names and typed
// descriptors ([Cmd], [Evt], [Qry]), an AsyncAPI 3.0 document and the subject
// tables of the services' READMEs; and a validator.
//
// The schema files are the source of truth. ./internal/gen generates the rest
// (run `make generate`, or `go generate ./...` here), and a test fails when a
// generated file is stale, so nothing can drift from the schemas.
//
// A message is named by its kind ("cmd" or "evt"), its service and its name, as in
// the subject slipway.<kind>.<service>.<name>[.<id>]; its schema's $id (see [ID]) is
// what the ce-dataschema header carries. A query on slipway.api.<service>.<endpoint>
// has two: its request (kind "qry") and its reply (kind "rpl"), both named
// <service>.<endpoint>; [LookupQuery] returns the pair, and pkg/bus checks both.
package schemas

//go:generate go run ./internal/gen
