// Reading a NATS credentials file (.creds) in the browser: the user JWT
// and the seed, and the user's name (the JWT's "name" claim), which is the
// sender token of every subject the console uses. The file stays in the
// page's memory: it is handed to the NATS client and sent nowhere else.

const JWT_BLOCK = /-----BEGIN NATS USER JWT-----\s*([A-Za-z0-9_\-.]+)\s*------END NATS USER JWT------/;
const SEED_BLOCK = /-----BEGIN USER NKEY SEED-----\s*(SU[A-Z2-7]+)\s*------END USER NKEY SEED------/;

// A user name as the catalog accepts it (pkg/identity's Principal): the
// last token of a subject: a lower-case letter, then a-z, 0-9, _ and -.
const NAME = /^[a-z][a-z0-9_-]{0,127}$/;

function base64url(s) {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4);
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}

/**
 * parseCreds reads the text of a .creds file and returns {jwt, seed, name}
 * or throws an Error that says what is wrong with it.
 */
export function parseCreds(text) {
  const jwt = JWT_BLOCK.exec(text || "");
  if (!jwt) throw new Error("not a NATS credentials file: no \"BEGIN NATS USER JWT\" block (use the .creds file `slipway user create --out` wrote)");
  const seed = SEED_BLOCK.exec(text);
  if (!seed) throw new Error("the credentials file has no user seed (\"BEGIN USER NKEY SEED\" block)");
  const parts = jwt[1].split(".");
  if (parts.length !== 3) throw new Error("the credentials file's JWT is malformed (want three dot-separated parts)");
  let claims;
  try {
    claims = JSON.parse(base64url(parts[1]));
  } catch {
    throw new Error("the credentials file's JWT is malformed (its claims are not JSON)");
  }
  const name = claims && claims.name;
  if (typeof name !== "string" || !NAME.test(name)) {
    throw new Error(`the credentials file's JWT names no usable user (name ${JSON.stringify(name)})`);
  }
  return { jwt: jwt[1], seed: seed[1], name };
}
