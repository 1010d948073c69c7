// Unit tests of reading a .creds file in the browser (src/creds.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseCreds } from "../src/creds.js";

const b64url = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
const creds = (claims, seed = "SUAGMJH5XLGZKQQWAWKRZJIGMOU4HPFUYLXJMXOO5NLFEO2OOQJ5LPRDPM") =>
  `-----BEGIN NATS USER JWT-----\n${b64url({ typ: "JWT" })}.${b64url(claims)}.c2ln\n------END NATS USER JWT------\n\n` +
  `************************* IMPORTANT *************************\n\n-----BEGIN USER NKEY SEED-----\n${seed}\n------END USER NKEY SEED------\n`;

test("a credentials file gives the JWT, the seed and the user's name", () => {
  const c = parseCreds(creds({ name: "alice", sub: "UABC" }));
  assert.equal(c.name, "alice");
  assert.match(c.seed, /^SU/);
  assert.equal(c.jwt.split(".").length, 3);
});

test("what is not a credentials file is refused, saying why", () => {
  assert.throws(() => parseCreds("hello"), /not a NATS credentials file/);
  assert.throws(() => parseCreds(""), /not a NATS credentials file/);
  assert.throws(() => parseCreds(creds({ name: "alice" }).replace(/-----BEGIN USER NKEY SEED-----[\s\S]*/, "")), /no user seed/);
});

test("a name that is no subject token is refused", () => {
  for (const name of ["alice.>", "*", "Alice", "a b", "", 7, undefined, "x".repeat(129)]) {
    assert.throws(() => parseCreds(creds({ name })), /names no usable user/, JSON.stringify(name));
  }
});

test("malformed claims are refused", () => {
  const bad = creds({ name: "alice" }).replace(/\n[^.\n]+\.[^.\n]+\.c2ln\n/, "\nabc.%%%.c2ln\n");
  assert.throws(() => parseCreds(bad), /malformed|not a NATS/);
});
