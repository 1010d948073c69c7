package s3iam

import (
	"bytes"
	"crypto/rand"
	"fmt"

	"github.com/secure-io/sio-go"
	"golang.org/x/crypto/argon2"
)

// The sealed form MinIO's admin API expects for secrets in a request body
// (add-user, policy attach): salt (32 bytes) | AEAD id (1) | nonce (8) |
// DARE stream. The key is argon2id(secret key of the caller, salt) with
// MinIO's parameters; the id 0x00 says AES-256-GCM.
const (
	saltLen        = 32
	aeadAES256GCM  = 0x00
	argon2Time     = 1
	argon2MemoryKB = 64 * 1024
	argon2Threads  = 4
	keyLen         = 32
)

// seal encrypts data for the admin API with a key derived from password
// (the secret key of the account signing the request).
func seal(password string, data []byte) ([]byte, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("s3iam: salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, argon2Time, argon2MemoryKB, argon2Threads, keyLen)
	stream, err := sio.AES_256_GCM.Stream(key)
	if err != nil {
		return nil, fmt.Errorf("s3iam: cipher: %w", err)
	}
	nonce := make([]byte, stream.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("s3iam: nonce: %w", err)
	}
	var out bytes.Buffer
	out.Write(salt)
	out.WriteByte(aeadAES256GCM)
	out.Write(nonce)
	w := stream.EncryptWriter(&out, nonce, nil)
	if _, err := w.Write(data); err != nil {
		return nil, fmt.Errorf("s3iam: seal: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("s3iam: seal: %w", err)
	}
	return out.Bytes(), nil
}
