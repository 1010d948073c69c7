// Package saga runs long workflows as sagas: records with typed phases kept
// in a JetStream KV bucket, one key per saga.
//
// Every write is a compare-and-set on the key's revision, so several
// replicas of a service (and several deliveries of one message) can act on
// the same saga and only one of them wins each step: [Store.Advance] refuses
// to move a saga out of a phase it is no longer in, which is what makes a
// redelivered step harmless.
//
// Each phase has a deadline and an optional compensation (typically: delete
// the blobs the phase wrote, recorded with [Store.Own]). When a saga fails,
// [Engine.Compensate] undoes the phases it went through, newest first, and
// remembers which compensations already ran, so a retry after a crash
// resumes where it stopped instead of starting over. [Engine.RunReconciler]
// is the safety net: it fails sagas whose phase deadline passed, retries
// unfinished compensations and forgets finished sagas after a retention
// period.
package saga
