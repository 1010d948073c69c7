package identity

// ObserverCredentials are credentials that may subscribe to everything and
// publish nothing: the tests' witness of what the server delivers.
func ObserverCredentials(a *Authority) ([]byte, error) {
	return credentials(func(pub string) (string, error) {
		return a.issue(Principal{Name: "observer"}, pub, auditorPermissions())
	})
}
