// Package cryptoluks is Slipway's crypto-luks service: it encrypts images
// into LUKS volumes and makes empty ones (with qemu-img, package luks),
// keeps each volume's passphrases envelope-encrypted in KV (package
// envelope), hands a passphrase only sealed to the asker's one-time X25519
// key (pkg/sealbox), adds, removes and rotates key slots of stored volumes,
// and re-wraps every data key when the key-encryption key changes.
//
// Subjects, KV and configuration: README.md.
package cryptoluks
