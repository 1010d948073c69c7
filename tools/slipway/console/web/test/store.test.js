// Unit tests of the console's state store (src/store.js): node --test.
import { test } from "node:test";
import assert from "node:assert/strict";
import { emptyState, humanSize, images, knows, permissionRows, reduce, row, HISTORY_LIMIT } from "../src/store.js";

const img = (id, over = {}) => ({
  id, name: `img${id}`, user: "alice", group: "users", datastore: "default", type: "OS", persistent: false,
  state: "LOCKED", rvms: 0, permissions: "600", created_at: "2026-01-01T00:00:00Z", updated_at: "2026-01-01T00:00:00Z", ...over,
});

const loaded = (...list) => reduce(emptyState(), { type: "loaded", images: list });

test("the list query fills the store, in ID order", () => {
  const s = loaded(img(3), img(1));
  assert.deepEqual(images(s).map((i) => i.id), [1, 3]);
  assert.ok(knows(s, 1) && !knows(s, 2));
});

test("events before the list are queued and replayed after it", () => {
  let s = emptyState();
  s = reduce(s, { type: "state", id: 1, to: "READY" });
  s = reduce(s, { type: "upsert", checked: true, image: img(2, { state: "READY", updated_at: "2026-01-01T00:00:05Z" }) });
  s = reduce(s, { type: "upsert", image: img(3) });
  assert.equal(images(s).length, 0, "nothing shows before the list");
  s = reduce(s, { type: "loaded", images: [img(1)] });
  assert.equal(s.images[1].state, "READY", "the queued state change applies to the listed image");
  assert.equal(s.images[2].state, "READY", "a queued record the caller fetched is added");
  assert.ok(!knows(s, 3), "a queued event's record is not");
  assert.equal(s.queued.length, 0);
});

test("a record never replaces a newer one", () => {
  let s = loaded(img(1, { name: "new", updated_at: "2026-01-01T00:00:10Z" }));
  s = reduce(s, { type: "upsert", image: img(1, { name: "old", updated_at: "2026-01-01T00:00:05Z" }) });
  assert.equal(s.images[1].name, "new");
  s = reduce(s, { type: "upsert", image: img(1, { name: "newer", updated_at: "2026-01-01T00:00:11Z" }) });
  assert.equal(s.images[1].name, "newer");
});

test("an event alone never adds an image; a checked record does", () => {
  let s = loaded(img(1));
  s = reduce(s, { type: "upsert", image: img(5, { user: "bob" }) });
  assert.ok(!knows(s, 5), "another user's image-created event is not shown");
  s = reduce(s, { type: "upsert", image: img(5), checked: true });
  assert.ok(knows(s, 5), "the show query's answer is");
});

test("state-changed moves a listed image and ignores an unknown one", () => {
  let s = loaded(img(1));
  s = reduce(s, { type: "state", id: 1, to: "ERROR", error: "convert: bad", entry: { time: "t", event: "state-changed", text: "LOCKED → ERROR" } });
  assert.equal(s.images[1].state, "ERROR");
  assert.equal(s.images[1].error, "convert: bad");
  assert.equal(s.history[1].length, 1);
  const same = reduce(s, { type: "state", id: 9, to: "READY" });
  assert.equal(same, s, "an image the store does not list is not invented from an event");
});

test("deleted and forget remove the image and its history", () => {
  let s = loaded(img(1), img(2));
  s = reduce(s, { type: "upsert", image: img(1, { updated_at: "2026-01-02T00:00:00Z" }), entry: { time: "t", event: "image-updated", text: "x" } });
  s = reduce(s, { type: "deleted", id: 1 });
  assert.ok(!knows(s, 1) && !s.history[1]);
  s = reduce(s, { type: "forget", id: 2 });
  assert.equal(images(s).length, 0);
});

test("history keeps the newest entries only", () => {
  let s = loaded(img(1));
  for (let i = 0; i < HISTORY_LIMIT + 5; i++) s = reduce(s, { type: "state", id: 1, to: "READY", entry: { time: String(i), event: "state-changed", text: "" } });
  assert.equal(s.history[1].length, HISTORY_LIMIT);
  assert.equal(s.history[1][0].time, "5");
});

test("loading starts over: events queue again until the new list", () => {
  let s = loaded(img(1));
  s = reduce(s, { type: "loading" });
  s = reduce(s, { type: "deleted", id: 1 });
  assert.ok(knows(s, 1), "queued while loading");
  s = reduce(s, { type: "loaded", images: [img(1), img(2)] });
  assert.ok(!knows(s, 1) && knows(s, 2));
});

test("the reducer does not change the state it is given", () => {
  const s = loaded(img(1));
  const frozen = JSON.stringify(s);
  reduce(s, { type: "state", id: 1, to: "READY" });
  reduce(s, { type: "deleted", id: 1 });
  assert.equal(JSON.stringify(s), frozen);
  assert.throws(() => reduce(s, { type: "bogus" }), /unknown action bogus/);
});

test("a row has oneimage list's columns", () => {
  const names = { states: { READY: "rdy" }, types: { OS: "OS", DATABLOCK: "DB" } };
  assert.deepEqual(row(img(7, { state: "READY", size: 200 * 1024 * 1024, persistent: true, rvms: 2 }), names),
    ["7", "alice", "users", "img7", "default", "200M", "OS", "Yes", "rdy", "2"]);
  assert.equal(row(img(1, { state: "NEWSTATE", type: "DATABLOCK" }), names)[8], "newstate", "an unknown state shows lower-cased");
});

test("sizes as OpenNebula's CLI prints them", () => {
  const K = 1024, M = K * K, G = M * K;
  for (const [n, want] of [[0, "0M"], [-5, "0M"], [512, "0.5K"], [512 * K, "512K"], [1025 * K, "1M"], [10 * M, "10M"], [1.5 * G, "1.5G"], [G, "1024M"], [2 * G, "2G"]]) {
    assert.equal(humanSize(n), want, `humanSize(${n})`);
  }
});

test("permission bits as oneimage show's block", () => {
  assert.deepEqual(permissionRows("640"), [["OWNER", "um-"], ["GROUP", "u--"], ["OTHER", "---"]]);
  assert.deepEqual(permissionRows("777"), [["OWNER", "uma"], ["GROUP", "uma"], ["OTHER", "uma"]]);
  assert.deepEqual(permissionRows("9x9"), []);
  assert.deepEqual(permissionRows(undefined), []);
});
