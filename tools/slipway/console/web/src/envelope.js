// The CloudEvents envelope of Slipway's messages (pkg/envelope) as the
// console writes and reads it: pure functions, with no NATS client, so
// that node --test and the Go tests (TestPageEnvelopeIsTheBus) check them.

/**
 * commandHeaders are the NATS headers of command verb of service, as
 * pkg/bus's Command writes them: ce-id (and JetStream's Nats-Msg-Id, for
 * de-duplication), type, source, subject, time, dataschema, content type,
 * and the correlation: a command outside any saga starts one.
 */
export function commandHeaders(service, verb, id, ceSubject, time) {
  const h = {
    "ce-specversion": "1.0",
    "ce-id": id,
    "Nats-Msg-Id": id,
    "ce-type": `io.slipway.${service}.${verb}.v1`,
    "ce-source": "/slipway/console",
    "ce-time": time,
    "ce-dataschema": `https://slipway.dev/schemas/cmd/${service}.${verb}.json`,
    "ce-datacontenttype": "application/json",
    "ce-correlationid": id,
  };
  if (ceSubject) h["ce-subject"] = ceSubject;
  return h;
}

/**
 * parseEvent reads an event's subject (<prefix>.evt.<service>.<name>.<id>),
 * its JSON body and, through header(name) (names matched without regard
 * to case), its causation and time. Anything else is null.
 */
export function parseEvent(prefix, subject, body, header) {
  const head = `${prefix}.evt.`;
  if (!subject.startsWith(head)) return null;
  const parts = subject.slice(head.length).split(".");
  if (parts.length !== 3 || parts.some((p) => p === "")) return null;
  let data = null;
  try {
    data = body ? JSON.parse(body) : null;
  } catch {
    return null;
  }
  return {
    service: parts[0],
    name: parts[1],
    id: parts[2],
    data,
    causation: header("ce-causationid") || "",
    time: header("ce-time") || new Date().toISOString(),
  };
}
