package identity

import (
	"fmt"
	"regexp"

	"github.com/nats-io/jwt/v2"

	"github.com/slipway/slipway/schemas"
)

// Principal is who a connection authenticates as: a service or a user.
type Principal struct {
	// Name is the principal's subject token: a service's name
	// (schemas.ServiceCatalog) or a user's name.
	Name string
	// Service says Name is a service; its permissions are those the
	// schemas grant that service.
	Service bool
	// Admin says a user is in the oneadmin group: it may also send what
	// the schemas grant "admins", and use the JetStream API.
	Admin bool
}

// Service is the principal of the service named name.
func Service(name string) Principal { return Principal{Name: name, Service: true} }

// User is the principal of a user; admin is membership of the oneadmin
// group.
func User(name string, admin bool) Principal { return Principal{Name: name, Admin: admin} }

// validName is what a principal's name may be: one NATS subject token that
// no wildcard, dot or white space can widen, and no longer than a user name
// in OpenNebula.
var validName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,127}$`)

// Validate checks that p's name can stand as a subject token, and that a
// user's name is no service's (a user named "catalog" would send as the
// catalog) and neither sender class.
func (p Principal) Validate() error {
	if !validName.MatchString(p.Name) {
		return fmt.Errorf("identity: name %q: want a lower-case letter, then up to 127 of a-z, 0-9, _ and -", p.Name)
	}
	if p.Service {
		if !schemas.IsService(p.Name) {
			return fmt.Errorf("identity: %q is not a service of the schemas (%v)", p.Name, schemas.Services())
		}
		return nil
	}
	if p.Name == schemas.SenderUsers || p.Name == schemas.SenderAdmins || schemas.IsService(p.Name) {
		return fmt.Errorf("identity: user name %q is reserved (a service's name or a sender class)", p.Name)
	}
	return nil
}

// MaySend reports whether p may send the command or ask the query m: its
// schema's senders name p's service, "users" for any user, or "admins" for
// a user of the oneadmin group. Events and replies are sent by their owner
// alone.
func (p Principal) MaySend(m schemas.Message) bool {
	if m.Kind != schemas.KindCommand && m.Kind != schemas.KindQuery {
		return p.Service && m.Service == p.Name
	}
	for _, s := range m.Senders {
		switch {
		case p.Service && s == p.Name,
			!p.Service && s == schemas.SenderUsers,
			!p.Service && p.Admin && s == schemas.SenderAdmins:
			return true
		}
	}
	return false
}

// Subject is the subject p publishes m on: the message's subject with p's
// token last. The receiving service reads the sender from that token
// (schemas.Sender).
func (p Principal) Subject(prefix string, m schemas.Message) string {
	return MessageSubject(prefix, m) + "." + p.Name
}

// MessageSubject is a command's or query's subject without its sender
// token: <prefix>.cmd.<service>.<verb> or <prefix>.api.<service>.<endpoint>.
func MessageSubject(prefix string, m schemas.Message) string {
	if m.Kind == schemas.KindQuery {
		return prefix + ".api." + m.Service + "." + m.Name
	}
	return prefix + "." + m.Kind + "." + m.Service + "." + m.Name
}

// InboxPrefix is the prefix of p's reply subjects (nats.CustomInboxPrefix,
// `nats --inbox-prefix`): only p may subscribe below it.
func (p Principal) InboxPrefix() string { return schemas.InboxPrefix(p.Name) }

// Permissions are the subjects p may publish and subscribe to under prefix,
// everything else denied:
//   - every command and query the schemas let p send, with p's token last;
//   - replies on p's own inbox, and answers to requests p received;
//   - every event, to watch (which events a user may see is the services'
//     to decide: they publish only what is theirs);
//   - a service: its own events, the queries it answers, its consumers'
//     acknowledgements, the JetStream API and key-value buckets, the
//     dead-letter subjects and JetStream's advisories;
//   - an administrator: the JetStream API and the dead letters.
func (p Principal) Permissions(prefix string) jwt.Permissions {
	var perm jwt.Permissions
	for _, m := range schemas.Messages() {
		if (m.Kind == schemas.KindCommand || m.Kind == schemas.KindQuery) && p.MaySend(m) {
			perm.Pub.Allow.Add(p.Subject(prefix, m))
		}
	}
	perm.Sub.Allow.Add(p.InboxPrefix()+".>", prefix+".evt.>")
	// Answers to a request go to the asker's inbox, once.
	perm.Resp = &jwt.ResponsePermission{MaxMsgs: 1}
	switch {
	case p.Service:
		perm.Pub.Allow.Add(prefix+".evt."+p.Name+".>", prefix+".dlq.>",
			"$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "$KV.>")
		perm.Sub.Allow.Add(prefix+".api."+p.Name+".>", "$SRV.>", "$JS.EVENT.ADVISORY.>", prefix+".dlq.>")
	case p.Admin:
		perm.Pub.Allow.Add("$JS.API.>", "$JS.ACK.>", "$JS.FC.>")
		perm.Sub.Allow.Add(prefix + ".dlq.>")
	}
	return perm
}
