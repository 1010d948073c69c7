package identity

import "github.com/nats-io/jwt/v2"

// ObserverCredentials are credentials that may subscribe to everything and
// publish nothing: the tests' witness of what the server delivers.
func ObserverCredentials(a *Authority) ([]byte, error) {
	var perm jwt.Permissions
	perm.Sub.Allow.Add(">")
	perm.Pub.Deny.Add(">")
	return credentials(func(pub string) (string, error) {
		return a.issue(Principal{Name: "observer"}, pub, perm)
	})
}
