// Unit tests of the desktop upload's resumer (src/upload.js): node --test.
// The catalog's upload queries and S3 are played by an in-memory fake
// that checks what a real one checks: each part's bytes against the
// SHA-256 it was signed for, the ETags and checksums at completion.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { compositeChecksum, HTTPError, pending, resumeKey, Upload } from "../src/upload.js";

const b64 = (buf) => createHash("sha256").update(buf).digest("base64");

function fakeFile(bytes, name = "disk.raw", lastModified = 1765000000000) {
  const reads = [];
  return {
    name, size: bytes.length, lastModified, reads,
    slice(a, b) {
      const copy = () => bytes.buffer.slice(bytes.byteOffset + a, bytes.byteOffset + b);
      // sent is what S3's side reads of the slice, not counted as a read.
      return { arrayBuffer: async () => { reads.push(a); return copy(); }, sent: async () => copy() };
    },
  };
}

function memoryStorage() {
  const m = new Map();
  return {
    get length() { return m.size; },
    key: (i) => [...m.keys()][i] ?? null,
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => m.set(k, String(v)),
    removeItem: (k) => m.delete(k),
  };
}

// fakeS3 is the catalog's upload queries and S3 behind them.
function fakeS3(partSize) {
  const s = { uploads: new Map(), objects: new Map(), puts: 0, presigns: 0, live: 0, maxLive: 0, aborted: [], seq: 0 };
  const notFound = () => Object.assign(new Error("no such upload"), { code: "404" });
  s.api = {
    start: async ({ name, size }) => {
      const id = `up${++s.seq}`;
      const path = `s3://slipway-uploads/uploads/alice/${id}/${name}`;
      s.uploads.set(id, { path, parts: new Map() });
      return { path, upload_id: id, part_size: partSize, parts: Math.max(1, Math.ceil(size / partSize)) };
    },
    parts: async ({ upload_id }) => {
      const u = s.uploads.get(upload_id);
      if (!u) throw notFound();
      return { parts: [...u.parts.entries()].sort((a, b) => a[0] - b[0]).map(([number, p]) => ({ number, size: p.bytes.length, etag: p.etag, checksum_sha256: p.sum })) };
    },
    presign: async ({ upload_id, parts }) => {
      if (!s.uploads.has(upload_id)) throw notFound();
      s.presigns++;
      return { urls: parts.map((p) => ({ number: p.number, url: `put:${upload_id}:${p.number}:${p.checksum_sha256}` })) };
    },
    complete: async ({ path, upload_id, parts }) => {
      const u = s.uploads.get(upload_id);
      if (!u) throw notFound();
      parts.forEach((p, i) => {
        const held = u.parts.get(p.number);
        if (p.number !== i + 1 || !held || held.etag !== p.etag || held.sum !== p.checksum_sha256) throw Object.assign(new Error(`InvalidPart ${p.number}`), { code: "400" });
      });
      const body = Buffer.concat(parts.map((p) => u.parts.get(p.number).bytes));
      s.objects.set(path, body);
      s.uploads.delete(upload_id);
      return { path, size: body.length, s3_checksum: compositeChecksum(parts.map((p) => p.checksum_sha256)) };
    },
    abort: async ({ upload_id }) => { s.aborted.push(upload_id); s.uploads.delete(upload_id); return {}; },
  };
  s.put = async (url, body, sum) => {
    const [, id, n, signed] = url.split(":");
    s.live++;
    s.maxLive = Math.max(s.maxLive, s.live);
    try {
      await new Promise((r) => setTimeout(r, 1));
      if (s.fail) await s.fail(Number(n));
      s.puts++;
      const buf = Buffer.from(await body.sent());
      if (sum !== signed || b64(buf) !== signed) throw new HTTPError(400, "XAmzContentChecksumMismatch");
      const u = s.uploads.get(id);
      if (!u) throw new HTTPError(404, "NoSuchUpload");
      const etag = `"${createHash("md5").update(buf).digest("hex")}"`;
      u.parts.set(Number(n), { bytes: buf, etag, sum });
      return etag;
    } finally {
      s.live--;
    }
  };
  return s;
}

const upload = (s, file, storage, extra = {}) =>
  new Upload({ user: "alice", file, api: s.api, put: s.put, storage, inFlight: 3, retryForMs: 2000, ...extra });

test("a file goes up in parts, a bounded number in flight, with its whole SHA-256", async () => {
  const data = randomBytes(10 * 1000 + 123);
  const s = fakeS3(1000);
  const storage = memoryStorage();
  const file = fakeFile(data);
  const seen = [];
  const got = await upload(s, file, storage, { onProgress: (p) => seen.push(p) }).run();
  assert.equal(got.sha256, createHash("sha256").update(data).digest("hex"));
  assert.equal(got.size, data.length);
  assert.deepEqual(s.objects.get(got.path), data, "S3 holds the file's bytes");
  assert.equal(s.puts, 11);
  assert.ok(s.maxLive <= 3, `at most 3 parts in flight, saw ${s.maxLive}`);
  assert.deepEqual(file.reads, Array.from({ length: 11 }, (_, i) => i * 1000), "each part read once by the page, in order (the PUT sends the slice)");
  assert.equal(storage.length, 0, "nothing kept once complete");
  const sent = seen.map((p) => p.sent);
  assert.deepEqual(sent, [...sent].sort((a, b) => a - b), "progress only grows");
  assert.equal(seen.at(-1).phase, "uploaded");
  assert.equal(seen.at(-1).sent, data.length);
});

test("reads never run ahead of S3 by more than the parts in flight (memory stays flat)", async () => {
  const s = fakeS3(100);
  const file = fakeFile(randomBytes(100 * 40));
  let maxAhead = 0;
  const u = upload(s, file, memoryStorage(), { onProgress: (p) => { maxAhead = Math.max(maxAhead, (p.read - p.sent) / 100); } });
  await u.run();
  assert.ok(maxAhead <= 3 + 1, `read ${maxAhead} parts ahead of what S3 acknowledged`);
});

test("after a reload the same file resumes: the parts S3 holds are checked, not sent again", async () => {
  const data = randomBytes(8 * 500);
  const s = fakeS3(500);
  const storage = memoryStorage();
  // The first page dies after S3 has three parts: only storage survives.
  let sentBefore = 0;
  const first = upload(s, fakeFile(data), storage, { inFlight: 1 });
  s.fail = async () => { if (++sentBefore > 3) { first.controller.abort(new Error("page closed")); throw new TypeError("Failed to fetch"); } };
  await assert.rejects(first.run(), /page closed|Failed to fetch/);
  assert.equal(storage.length, 1, "the upload's state outlives the page");
  const kept = JSON.parse(storage.getItem(resumeKey("alice", fakeFile(data))));
  assert.deepEqual(Object.keys(kept).sort(), ["lastModified", "name", "part_size", "parts", "path", "size", "upload_id", "user"], "only what is no secret");
  assert.deepEqual(pending(storage, "alice").map((p) => p.name), ["disk.raw"]);
  assert.deepEqual(pending(storage, "bob"), []);

  s.fail = null;
  const putsBefore = s.puts;
  let last;
  const got = await upload(s, fakeFile(data), storage, { onProgress: (p) => (last = p) }).run();
  assert.equal(s.puts - putsBefore, 5, "only the five parts S3 did not have");
  assert.equal(last.skipped, 3);
  assert.deepEqual(s.objects.get(got.path), data);
  assert.equal(got.sha256, createHash("sha256").update(data).digest("hex"), "the whole hash covers the skipped parts too");
  assert.equal(storage.length, 0);
});

test("a held part whose bytes differ (another file of the same name, size and time) is sent again", async () => {
  const a = randomBytes(3 * 100);
  const b = Buffer.from(a);
  b[150] ^= 1; // part 2 differs
  const s = fakeS3(100);
  const storage = memoryStorage();
  const first = upload(s, fakeFile(a), storage, { inFlight: 1 });
  s.fail = async (n) => { if (n === 3) { first.controller.abort(new Error("page closed")); throw new TypeError("Failed to fetch"); } };
  await assert.rejects(first.run());
  s.fail = null;
  const putsBefore = s.puts;
  const got = await upload(s, fakeFile(b), storage).run();
  assert.equal(s.puts - putsBefore, 2, "parts 2 and 3 sent");
  assert.deepEqual(s.objects.get(got.path), b);
});

test("a dropped connection (S3 restarting) is retried with a fresh URL until it answers", async () => {
  const data = randomBytes(5 * 100);
  const s = fakeS3(100);
  let outage = 4;
  s.fail = async () => { if (outage-- > 0) throw new TypeError("Failed to fetch"); };
  const retries = [];
  const got = await upload(s, fakeFile(data), memoryStorage(), { onProgress: (p) => p.retrying && retries.push(p.retrying) }).run();
  assert.deepEqual(s.objects.get(got.path), data);
  assert.ok(retries.length >= 1 && /trying again/.test(retries[0]), `retries reported: ${retries}`);
  assert.equal(s.presigns, 5 + 4, "every attempt signs the part again");
});

test("S3 refusing the bytes (400) is final and names the part", async () => {
  const s = fakeS3(100);
  const put = s.put;
  const zeros = { sent: async () => new ArrayBuffer(100) };
  s.put = (url, body, sum, signal) => put(url, url.includes(":2:") ? zeros : body, sum, signal);
  await assert.rejects(upload(s, fakeFile(randomBytes(300)), memoryStorage()).run(), /part 2: S3 answered 400/);
});

test("an outage longer than the retry window fails, saying so", async () => {
  const s = fakeS3(100);
  s.fail = async () => { throw new TypeError("Failed to fetch"); };
  await assert.rejects(upload(s, fakeFile(randomBytes(100)), memoryStorage(), { retryForMs: 300 }).run(), /part 1: still failing after 0s: Failed to fetch/);
});

test("a kept upload the catalog no longer knows (completed, aborted, expired) starts again", async () => {
  const data = randomBytes(250);
  const s = fakeS3(100);
  const storage = memoryStorage();
  storage.setItem(resumeKey("alice", fakeFile(data)), JSON.stringify({ path: "s3://slipway-uploads/uploads/alice/gone/disk.raw", upload_id: "gone", part_size: 100, parts: 3 }));
  const got = await upload(s, fakeFile(data), storage).run();
  assert.deepEqual(s.objects.get(got.path), data);
  assert.ok(!got.path.includes("gone"));
});

test("cancel aborts the upload and forgets it", async () => {
  const s = fakeS3(100);
  const storage = memoryStorage();
  const u = upload(s, fakeFile(randomBytes(1000)), storage, { inFlight: 1 });
  s.fail = async (n) => { if (n === 2) await u.cancel(); };
  await assert.rejects(u.run(), /cancelled/);
  assert.equal(s.aborted.length, 1);
  assert.equal(storage.length, 0);
});

test("an empty file is one empty part", async () => {
  const s = fakeS3(100);
  const got = await upload(s, fakeFile(Buffer.alloc(0)), memoryStorage()).run();
  assert.equal(got.size, 0);
  assert.equal(got.sha256, createHash("sha256").digest("hex"));
});

test("compositeChecksum is S3's: SHA-256 of the parts' SHA-256s, -N", () => {
  const parts = [Buffer.from("a"), Buffer.from("b")];
  const raw = Buffer.concat(parts.map((p) => createHash("sha256").update(p).digest()));
  assert.equal(compositeChecksum(parts.map(b64)), `${createHash("sha256").update(raw).digest("base64")}-2`);
});
