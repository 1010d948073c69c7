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
//   - a service: its own events, the queries it answers, and the
//     JetStream API of what is its own and nothing else (JetStream);
//   - an administrator: the whole JetStream API, the dead letters, to
//     read and to forward (`slipway dead-letter`), and the services'
//     discovery (`nats micro ls|info|stats`: $SRV.PING, INFO, STATS).
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
		perm.Pub.Allow.Add(prefix + ".evt." + p.Name + ".>")
		perm.Sub.Allow.Add(prefix+".api."+p.Name+".>", "$SRV.>")
		js := JetStream(p.Name, prefix)
		perm.Pub.Allow.Add(js.Pub...)
		perm.Sub.Allow.Add(js.Sub...)
	case p.Admin:
		// And what `slipway dead-letter` needs to forward dead letters.
		perm.Pub.Allow.Add("$JS.API.>", "$JS.ACK.>", "$JS.FC.>", prefix+".dlq.>", "$SRV.PING", "$SRV.PING.>",
			"$SRV.INFO", "$SRV.INFO.>", "$SRV.STATS", "$SRV.STATS.>")
		perm.Sub.Allow.Add(prefix+".dlq.>", "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>")
	}
	return perm
}

// JetStreamGrant is the part of a service's permissions that concerns
// JetStream.
type JetStreamGrant struct{ Pub, Sub []string }

// JetStream is what service may do with JetStream under prefix: the API of
// what schemas.JetStreamOf says is its own, and nothing else. No service
// may delete or purge a stream, a bucket or another's consumer, nor read
// another's bucket.
//   - STREAM.INFO of the command, event and dead-letter streams (bus.Setup
//     finds them set up) and $JS.API.INFO (creating a bucket reads the
//     account's limits);
//   - its command consumer, named after it: CONSUMER.CREATE with its own
//     filter in the subject, which the server holds the consumer's filter
//     to (so no service can take another's commands off the work queue),
//     INFO, MSG.NEXT, and the acks of what it delivers;
//   - its event consumers likewise, by durable name (every event is
//     readable anyway);
//   - its buckets: $KV.<bucket>.> and the bucket stream's create, update,
//     info, message get (direct or not) and the ephemeral consumers of
//     watches (create, info, next, delete, flow control);
//   - the service that sets the streams up (the catalog): creating and
//     updating them, and forwarding dead letters: the max-deliveries
//     advisories, reading the dead message, publishing it on
//     <prefix>.dlq.>, deleting a dead command from the work queue.
//
// Everything else on $JS.API is denied; DURABLE.CREATE, which would let a
// consumer's filter be anything, is not granted either.
func JetStream(service, prefix string) JetStreamGrant {
	const api = "$JS.API."
	var g JetStreamGrant
	use := schemas.JetStreamOf(service)
	cmd, evt, dlq := schemas.CommandStream(prefix), schemas.EventStream(prefix), schemas.DeadLetterStream(prefix)
	g.Pub = append(g.Pub, api+"INFO")
	for _, stream := range []string{cmd, evt, dlq} {
		g.Pub = append(g.Pub, api+"STREAM.INFO."+stream)
	}
	durable := func(stream, name string, filters ...string) {
		if len(filters) == 1 {
			g.Pub = append(g.Pub, api+"CONSUMER.CREATE."+stream+"."+name+"."+filters[0])
		} else {
			g.Pub = append(g.Pub, api+"CONSUMER.CREATE."+stream+"."+name, api+"CONSUMER.CREATE."+stream+"."+name+".>")
		}
		g.Pub = append(g.Pub, api+"CONSUMER.INFO."+stream+"."+name, api+"CONSUMER.MSG.NEXT."+stream+"."+name,
			"$JS.ACK."+stream+"."+name+".>")
	}
	if schemas.ConsumesCommands(service) {
		durable(cmd, service, prefix+".cmd."+service+".>")
	}
	for _, name := range use.EventConsumers {
		durable(evt, name)
	}
	for _, b := range use.Buckets {
		bucket := schemas.BucketName(prefix, b)
		stream := schemas.BucketStream(bucket)
		g.Pub = append(g.Pub, "$KV."+bucket+".>",
			api+"STREAM.CREATE."+stream, api+"STREAM.UPDATE."+stream, api+"STREAM.INFO."+stream,
			api+"STREAM.MSG.GET."+stream, api+"DIRECT.GET."+stream, api+"DIRECT.GET."+stream+".>",
			api+"CONSUMER.CREATE."+stream, api+"CONSUMER.CREATE."+stream+".>",
			api+"CONSUMER.INFO."+stream+".*", api+"CONSUMER.MSG.NEXT."+stream+".*", api+"CONSUMER.DELETE."+stream+".*",
			"$JS.FC."+stream+".>")
	}
	if use.SetsUp {
		for _, stream := range []string{cmd, evt, dlq} {
			g.Pub = append(g.Pub, api+"STREAM.CREATE."+stream, api+"STREAM.UPDATE."+stream)
		}
		g.Pub = append(g.Pub, api+"STREAM.MSG.GET."+cmd, api+"STREAM.MSG.GET."+evt, api+"STREAM.MSG.DELETE."+cmd,
			prefix+".dlq.>")
		g.Sub = append(g.Sub, "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES."+cmd+".*",
			"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES."+evt+".*")
	}
	return g
}
