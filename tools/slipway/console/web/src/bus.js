// The console's NATS side: the same subjects, envelopes and answers as
// the CLI (tools/slipway/cli, pkg/bus), over the NATS server's WebSocket
// listener, as the logged-in user. Nothing here touches the DOM.

import { credsAuthenticator, headers, Match, wsconnect } from "@nats-io/nats-core";
import { parseCreds } from "./creds.js";
import { commandHeaders, parseEvent } from "./envelope.js";

/** How long a query or a command's answer may take. */
export const QUERY_TIMEOUT_MS = 10000;
export const ANSWER_TIMEOUT_MS = 30000;

// uuid4 is a random UUID (ce-id); crypto.randomUUID needs a secure
// context, which a console served over plain HTTP off loopback is not.
function uuid4() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Session is one logged-in connection. */
export class Session {
  /**
   * connect logs in to NATS at wsURL with the text of a .creds file.
   * prefix is the subjects' prefix (/config.json).
   */
  static async connect(wsURL, prefix, credsText) {
    const creds = parseCreds(credsText);
    const nc = await wsconnect({
      servers: [wsURL],
      name: `slipway-console/${creds.name}`,
      authenticator: credsAuthenticator(enc.encode(credsText)),
      // The server lets a user read replies on her own inbox only.
      inboxPrefix: `_INBOX_${creds.name}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 1000,
    });
    return new Session(nc, prefix, creds.name);
  }

  constructor(nc, prefix, user) {
    this.nc = nc;
    this.prefix = prefix;
    this.user = user;
  }

  close() {
    return this.nc.close();
  }

  /**
   * query asks service's endpoint as this user and returns the decoded
   * answer; a service's error reply throws an Error with its description.
   */
  async query(service, endpoint, req) {
    const subject = `${this.prefix}.api.${service}.${endpoint}.${this.user}`;
    let m;
    try {
      m = await this.nc.request(subject, enc.encode(JSON.stringify(req || {})), { timeout: QUERY_TIMEOUT_MS });
    } catch (err) {
      throw new Error(`${service} ${endpoint}: ${describe(err)}`);
    }
    const failure = m.headers && m.headers.get("Nats-Service-Error", Match.IgnoreCase);
    if (failure) {
      const e = new Error(failure);
      e.code = m.headers.get("Nats-Service-Error-Code", Match.IgnoreCase);
      throw e;
    }
    return JSON.parse(dec.decode(m.data));
  }

  /**
   * watch calls onEvent({service, name, id, data, causation}) for every
   * event of service, until the session closes.
   */
  watch(service, onEvent) {
    const sub = this.nc.subscribe(`${this.prefix}.evt.${service}.>`);
    (async () => {
      for await (const m of sub) {
        const ev = eventOf(this.prefix, m);
        if (ev) onEvent(ev);
      }
    })();
    return sub;
  }

  /**
   * command sends service's command verb with data (as the CLI does:
   * CloudEvents headers, JetStream's acknowledgement) and resolves with
   * the first answering event whose name is in accept, caused by it; the
   * service's failed event rejects with the service's own message.
   */
  async command(service, verb, data, accept, ceSubject) {
    const id = uuid4();
    const answered = new Promise((resolve, reject) => {
      const sub = this.nc.subscribe(`${this.prefix}.evt.${service}.>`);
      const timer = setTimeout(() => {
        sub.unsubscribe();
        reject(new Error(`no answer from the ${service} in ${ANSWER_TIMEOUT_MS / 1000}s (is it running?)`));
      }, ANSWER_TIMEOUT_MS);
      (async () => {
        for await (const m of sub) {
          const ev = eventOf(this.prefix, m);
          if (!ev || ev.causation !== id) continue;
          if (ev.name === "failed") {
            if (ev.data && ev.data.next_attempt_at) continue; // tried again
            clearTimeout(timer);
            sub.unsubscribe();
            const e = new Error((ev.data && ev.data.error) || "the command failed");
            e.code = ev.data && ev.data.code;
            reject(e);
            return;
          }
          if (accept.includes(ev.name)) {
            clearTimeout(timer);
            sub.unsubscribe();
            resolve(ev);
            return;
          }
        }
      })();
    });
    const h = headers();
    for (const [k, v] of Object.entries(commandHeaders(service, verb, id, ceSubject, new Date().toISOString()))) h.set(k, v);
    const subject = `${this.prefix}.cmd.${service}.${verb}.${this.user}`;
    let ack;
    try {
      ack = await this.nc.request(subject, enc.encode(JSON.stringify(data)), { headers: h, timeout: QUERY_TIMEOUT_MS });
    } catch (err) {
      answered.catch(() => {});
      throw new Error(`${service} ${verb}: ${describe(err)}`);
    }
    const pub = JSON.parse(dec.decode(ack.data) || "{}");
    if (pub.error) {
      answered.catch(() => {});
      throw new Error(`${service} ${verb}: not stored: ${pub.error.description || JSON.stringify(pub.error)}`);
    }
    return answered;
  }
}

// eventOf is the event a NATS message carries (envelope.js), or null.
function eventOf(prefix, m) {
  const header = (k) => (m.headers ? m.headers.get(k, Match.IgnoreCase) : "");
  return parseEvent(prefix, m.subject, m.data && m.data.length ? dec.decode(m.data) : "", header);
}

// describe turns the client's errors into a sentence.
function describe(err) {
  const s = String((err && err.message) || err);
  if (/permissions? violation/i.test(s)) return `the server refused it: ${s}`;
  if (/no responders/i.test(s)) return "no service answers (is it running?)";
  if (/timeout/i.test(s)) return "no answer in time";
  return s;
}
