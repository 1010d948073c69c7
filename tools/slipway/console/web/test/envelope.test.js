// Unit tests of the console's envelope (src/envelope.js); the Go side
// checks the same headers with pkg/envelope (TestPageEnvelopeIsTheBus).
import { test } from "node:test";
import assert from "node:assert/strict";
import { commandHeaders, parseEvent } from "../src/envelope.js";

test("a command's headers start a saga and de-duplicate on ce-id", () => {
  const h = commandHeaders("catalog", "image-rename", "0b8e7c9a-3f1d-4c2e-9a6b-5d4e3f2a1b0c", "7", "2026-01-01T00:00:00.000Z");
  assert.equal(h["ce-id"], h["Nats-Msg-Id"]);
  assert.equal(h["ce-correlationid"], h["ce-id"]);
  assert.equal(h["ce-type"], "io.slipway.catalog.image-rename.v1");
  assert.equal(h["ce-subject"], "7");
  assert.ok(!("ce-subject" in commandHeaders("catalog", "image-create", "x", "", "t")), "no empty ce-subject");
});

test("events are read from their subject, body and headers", () => {
  const hdr = { "ce-causationid": "c1", "ce-time": "2026-01-01T00:00:01Z" };
  const ev = parseEvent("slipway", "slipway.evt.catalog.state-changed.7", '{"id":7,"to":"READY"}', (k) => hdr[k]);
  assert.deepEqual(ev, { service: "catalog", name: "state-changed", id: "7", data: { id: 7, to: "READY" }, causation: "c1", time: "2026-01-01T00:00:01Z" });
  const none = () => undefined;
  assert.equal(parseEvent("slipway", "other.evt.catalog.x.1", "{}", none), null, "another prefix");
  assert.equal(parseEvent("slipway", "slipway.evt.catalog.x", "{}", none), null, "too few tokens");
  assert.equal(parseEvent("slipway", "slipway.evt.catalog..1", "{}", none), null, "an empty token");
  assert.equal(parseEvent("slipway", "slipway.evt.catalog.x.1", "{not json", none), null, "a body that is not JSON");
  assert.equal(parseEvent("slipway", "slipway.evt.catalog.x.1", "", none).data, null, "no body");
});
