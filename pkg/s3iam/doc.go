// Package s3iam gives every Slipway service its own S3 identity on MinIO
// and hands users short-lived, narrowly scoped access: no component shares
// the server's root key.
//
// It holds a small client of MinIO's admin API (Admin: canned policies,
// users, policy attachment; the add-user body encrypted as MinIO expects),
// the policy documents built from typed structs (Policy, with every bucket,
// prefix and key checked by one validator before it reaches a resource
// ARN), the provisioning step (Provision: buckets, one policy and one user
// per service, credential files 0600), and the issuing of temporary
// credentials through MinIO's STS AssumeRole with a session policy
// (AssumeRole).
package s3iam
