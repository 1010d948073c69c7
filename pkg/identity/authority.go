package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// AccountName is the account every Slipway principal is in: they share its
// streams, key-value buckets and subjects, and permissions separate them.
const AccountName = "SLIPWAY"

// MaxControlLine is the longest protocol line the server takes: room for
// the largest principal's JWT in its CONNECT.
const MaxControlLine = 64 << 10

// Authority holds the keys that make identities: the operator the server
// trusts, the system account, the SLIPWAY account and the account's signing
// key, which signs users' and services' JWTs.
type Authority struct {
	operator, system, account, signer nkeys.KeyPair
	// The JWTs the server is given, signed at Open.
	operatorClaims          *jwt.OperatorClaims
	systemJWT, accountJWT   string
	systemPub, accountPub   string
	signerPub, operatorName string
}

// keyFiles are the seeds an authority keeps, by file name, with the kind of
// key each is.
var keyFiles = []struct {
	name   string
	prefix nkeys.PrefixByte
}{
	{"operator.nk", nkeys.PrefixByteOperator},
	{"system.nk", nkeys.PrefixByteAccount},
	{"account.nk", nkeys.PrefixByteAccount},
	{"signer.nk", nkeys.PrefixByteAccount},
}

// Open loads the authority kept in dir, making its keys on first use: dir is
// created 0700 and each seed written 0600. The operator is named name
// (e.g. "slipway").
func Open(dir, name string) (*Authority, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	keys := make([]nkeys.KeyPair, len(keyFiles))
	for i, kf := range keyFiles {
		kp, err := loadOrCreate(filepath.Join(dir, kf.name), kf.prefix)
		if err != nil {
			return nil, err
		}
		keys[i] = kp
	}
	a := &Authority{operator: keys[0], system: keys[1], account: keys[2], signer: keys[3], operatorName: name}
	if err := a.sign(); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	return a, nil
}

// Load is Open for a process that must not make keys: the catalog issues
// users' JWTs with the keys slipway up or `slipway identity init` made, and
// keys of its own would be trusted by no server.
func Load(dir, name string) (*Authority, error) {
	if _, err := os.Stat(filepath.Join(dir, keyFiles[0].name)); err != nil {
		return nil, fmt.Errorf("identity: no authority in %s: %w", dir, err)
	}
	return Open(dir, name)
}

// loadOrCreate reads the seed at path, or makes a key of kind prefix and
// writes its seed there (0600, never over an existing file).
func loadOrCreate(path string, prefix nkeys.PrefixByte) (nkeys.KeyPair, error) {
	seed, err := os.ReadFile(path)
	if err == nil {
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
		if err != nil {
			return nil, fmt.Errorf("identity: %s is not an nkey seed", path)
		}
		pub, _ := kp.PublicKey()
		if _, err := nkeys.Decode(prefix, []byte(pub)); err != nil {
			return nil, fmt.Errorf("identity: %s holds the wrong kind of key", path)
		}
		return kp, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("identity: %w", err)
	}
	kp, err := nkeys.CreatePair(prefix)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	seed, err = kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	if _, err := f.Write(append(seed, '\n')); err != nil {
		f.Close()
		return nil, fmt.Errorf("identity: %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("identity: %s: %w", path, err)
	}
	return kp, nil
}

// sign makes the operator's, the system account's and the SLIPWAY
// account's JWTs. JetStream is enabled, unlimited, for SLIPWAY only.
func (a *Authority) sign() error {
	var err error
	pub := func(kp nkeys.KeyPair) string {
		if err != nil {
			return ""
		}
		var p string
		p, err = kp.PublicKey()
		return p
	}
	opPub := pub(a.operator)
	a.systemPub, a.accountPub, a.signerPub = pub(a.system), pub(a.account), pub(a.signer)
	if err != nil {
		return err
	}
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = a.operatorName
	oc.SystemAccount = a.systemPub
	if _, err := oc.Encode(a.operator); err != nil {
		return err
	}
	a.operatorClaims = oc
	sc := jwt.NewAccountClaims(a.systemPub)
	sc.Name = "SYS"
	if a.systemJWT, err = sc.Encode(a.operator); err != nil {
		return err
	}
	a.accountJWT, err = a.AccountJWT(nil)
	return err
}

// AccountJWT is the SLIPWAY account's JWT, signed by the operator, with
// revoked: each public user key there, and every JWT issued for it at or
// before its time, is refused by the server; connections already open with
// one are closed when the server takes the JWT (PushAccount).
func (a *Authority) AccountJWT(revoked map[string]time.Time) (string, error) {
	ac := jwt.NewAccountClaims(a.accountPub)
	ac.Name = AccountName
	ac.SigningKeys.Add(a.signerPub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	for key, at := range revoked {
		if !nkeys.IsValidPublicUserKey(key) {
			return "", fmt.Errorf("identity: revoke %q: not a public user nkey", key)
		}
		ac.RevokeAt(key, at)
	}
	return ac.Encode(a.operator)
}

// PushAccount hands the server that opts reach the SLIPWAY account's JWT
// token (AccountJWT): it connects as a user of the system account that may
// publish only the account's claims update, asks, and returns the server's
// refusal as an error. opts are a connection's options (nats.Conn.Opts),
// so the same servers and TLS are used; their credentials are replaced.
//
// A server resolving accounts from memory (slipway up, compose) keeps the
// update until it restarts, when it starts again from the JWT it was
// configured with: whoever keeps the revocations pushes them again then.
func (a *Authority) PushAccount(ctx context.Context, opts nats.Options, token string) error {
	subject := fmt.Sprintf(claimsUpdateSubject, a.accountPub)
	kp, err := nkeys.CreateUser()
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	uc := jwt.NewUserClaims(pub)
	uc.Name = "account-updater"
	uc.Permissions.Pub.Allow.Add(subject)
	uc.Permissions.Sub.Allow.Add(updaterInbox + ".>")
	uc.Expires = time.Now().Add(5 * time.Minute).Unix()
	userJWT, err := uc.Encode(a.system)
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	o := opts
	o.Name = "slipway-account-updater"
	o.InboxPrefix = updaterInbox
	o.AllowReconnect = false
	o.RetryOnFailedConnect = false
	o.User, o.Password, o.Token, o.Nkey = "", "", "", ""
	o.UserJWT, o.SignatureCB, o.TokenHandler, o.UserInfo = nil, nil, nil, nil
	o.ClosedCB, o.DisconnectedErrCB, o.ReconnectedCB, o.ConnectedCB, o.AsyncErrorCB = nil, nil, nil, nil, nil
	if err := nats.UserJWTAndSeed(userJWT, string(seed))(&o); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	nc, err := o.Connect()
	if err != nil {
		return fmt.Errorf("identity: connect to push the account's JWT: %w", err)
	}
	defer nc.Close()
	msg, err := nc.RequestWithContext(ctx, subject, []byte(token))
	if err != nil {
		return fmt.Errorf("identity: push the account's JWT: %w", err)
	}
	var reply struct {
		Data *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"data"`
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return fmt.Errorf("identity: the server's answer to the account's JWT: %w", err)
	}
	if reply.Error != nil {
		return fmt.Errorf("identity: the server refused the account's JWT: %s", reply.Error.Description)
	}
	if reply.Data == nil || reply.Data.Message != "jwt updated" {
		return fmt.Errorf("identity: the server did not take the account's JWT: %s", msg.Data)
	}
	return nil
}

// claimsUpdateSubject is where a server of the system account takes an
// account's new JWT (nats-server's $SYS.REQ.ACCOUNT.<account>.CLAIMS.UPDATE).
const claimsUpdateSubject = "$SYS.REQ.ACCOUNT.%s.CLAIMS.UPDATE"

// updaterInbox is the reply prefix of PushAccount's connection.
const updaterInbox = "_INBOX_account_updater"

// ConfigureServer makes o trust only this authority: operator mode, the two
// accounts preloaded in memory. Anonymous connections are refused.
func (a *Authority) ConfigureServer(o *server.Options) error {
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(a.systemPub, a.systemJWT); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	if err := resolver.Store(a.accountPub, a.accountJWT); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	o.TrustedOperators = []*jwt.OperatorClaims{a.operatorClaims}
	// A JWT lists its holder's subjects one by one and travels in the
	// CONNECT line: an administrator's outgrows the default 4 KiB.
	o.MaxControlLine = MaxControlLine
	o.TrustedKeys = nil
	o.SystemAccount = a.systemPub
	o.AccountResolver = resolver
	return nil
}

// WriteServerConfig writes the same trust as nats-server configuration, for
// a server of its own (compose): include it from nats.conf.
func (a *Authority) WriteServerConfig(w io.Writer) error {
	op, err := a.operatorClaims.Encode(a.operator)
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	_, err = fmt.Fprintf(w, "operator: %q\nsystem_account: %q\nmax_control_line: %d\nresolver: MEMORY\nresolver_preload: {\n  %s: %q\n  %s: %q\n}\n",
		op, a.systemPub, MaxControlLine, a.systemPub, a.systemJWT, a.accountPub, a.accountJWT)
	return err
}

// Issue signs a JWT for p's public user key userKey, with p's permissions
// under prefix. The seed that goes with userKey stays with the caller.
func (a *Authority) Issue(p Principal, userKey, prefix string) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	perm := p.Permissions(prefix)
	return a.issue(p, userKey, perm)
}

func (a *Authority) issue(p Principal, userKey string, perm jwt.Permissions) (string, error) {
	if !nkeys.IsValidPublicUserKey(userKey) {
		return "", fmt.Errorf("identity: %q is not a public user nkey", userKey)
	}
	uc := jwt.NewUserClaims(userKey)
	uc.Name = p.Name
	uc.IssuerAccount = a.accountPub
	uc.Permissions = perm
	switch {
	case p.Service:
		uc.Tags.Add("service")
	case p.Admin:
		uc.Tags.Add("oneadmin")
	}
	token, err := uc.Encode(a.signer)
	if err != nil {
		return "", fmt.Errorf("identity: %s: %w", p.Name, err)
	}
	return token, nil
}

// Credentials makes a new key for p and returns a NATS credentials file:
// the JWT Issue signs and the key's seed. Whoever holds it is p.
func (a *Authority) Credentials(p Principal, prefix string) ([]byte, error) {
	return credentials(func(pub string) (string, error) { return a.Issue(p, pub, prefix) })
}

// credentials makes a user key, has sign make its JWT and formats both as
// a credentials file.
func credentials(sign func(pub string) (string, error)) ([]byte, error) {
	token, seed, err := signedKey(sign)
	if err != nil {
		return nil, err
	}
	return jwt.FormatUserConfig(token, seed)
}

// signedKey makes a user key and has sign make its JWT.
func signedKey(sign func(pub string) (string, error)) (token string, seed []byte, err error) {
	k, err := NewUserKey()
	if err != nil {
		return "", nil, err
	}
	if token, err = sign(k.PublicKey()); err != nil {
		return "", nil, err
	}
	if seed, err = k.kp.Seed(); err != nil {
		return "", nil, fmt.Errorf("identity: %w", err)
	}
	return token, seed, nil
}

// UserKey is a user's key pair, made where its credentials file is
// written: only the public key leaves (in a catalog user-create command),
// the JWT comes back, and the seed goes straight into the file.
type UserKey struct {
	kp  nkeys.KeyPair
	pub string
}

// NewUserKey makes a user key pair.
func NewUserKey() (*UserKey, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	return &UserKey{kp: kp, pub: pub}, nil
}

// PublicKey is the key's public half, "U…".
func (k *UserKey) PublicKey() string { return k.pub }

// Credentials is the credentials file of token, a JWT issued for this key:
// it fails when token names another key.
func (k *UserKey) Credentials(token string) ([]byte, error) {
	claims, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return nil, fmt.Errorf("identity: the user JWT: %w", err)
	}
	if claims.Subject != k.pub {
		return nil, fmt.Errorf("identity: the JWT is for key %s, not %s", claims.Subject, k.pub)
	}
	seed, err := k.kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	return jwt.FormatUserConfig(token, seed)
}

// WriteCredentials writes creds to path, readable by its owner alone, and
// never over an existing file.
func WriteCredentials(path string, creds []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("identity: credentials: %w", err)
	}
	if _, err := f.Write(creds); err != nil {
		f.Close()
		return fmt.Errorf("identity: credentials %s: %w", path, err)
	}
	return f.Close()
}

// Option makes a new key for p and returns the connect option that
// authenticates as p with it: for a process that runs a service itself
// (`slipway up`) and needs no file.
func (a *Authority) Option(p Principal, prefix string) (nats.Option, error) {
	return option(func(pub string) (string, error) { return a.Issue(p, pub, prefix) })
}

// AuditorOption authenticates a connection that may watch every subject and
// publish nothing: for an operator's audit trail, and for tests that must
// see what the server delivers (including commands, which no principal
// otherwise subscribes to).
func (a *Authority) AuditorOption() (nats.Option, error) {
	return option(func(pub string) (string, error) {
		return a.issue(Principal{Name: "auditor"}, pub, auditorPermissions())
	})
}

// auditorPermissions watch every subject and publish none.
func auditorPermissions() jwt.Permissions {
	var perm jwt.Permissions
	perm.Sub.Allow.Add(">")
	perm.Pub.Deny.Add(">")
	return perm
}

// UnrestrictedOption authenticates a connection named name that may publish
// and subscribe to anything in the account, with no response limits: an
// operator's own tool, or a test's witness that plays the components a
// test stands in for. The services never get one.
func (a *Authority) UnrestrictedOption(name string) (nats.Option, error) {
	return option(func(pub string) (string, error) {
		return a.issue(Principal{Name: name}, pub, jwt.Permissions{})
	})
}

// option makes a user key, has sign make its JWT and authenticates with
// both, in memory.
func option(sign func(pub string) (string, error)) (nats.Option, error) {
	token, seed, err := signedKey(sign)
	if err != nil {
		return nil, err
	}
	return nats.UserJWTAndSeed(token, string(seed)), nil
}

// EnsureCredentials writes p's credentials to path unless a file is there
// already. A file from an earlier start stays valid: the authority's keys
// are the same.
func (a *Authority) EnsureCredentials(path string, p Principal, prefix string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	creds, err := a.Credentials(p, prefix)
	if err != nil {
		return err
	}
	return WriteCredentials(path, creds)
}
