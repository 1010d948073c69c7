// The desktop upload: a local file goes straight to S3 in presigned
// parts, several in flight, resumable after a dropped connection or a
// page reload, and checked twice: S3 verifies each part against the
// SHA-256 its URL was signed for, and the whole file's SHA-256, computed
// here while reading, goes into image-create, whose import checks it
// against what it fetches. The page holds no S3 key: the catalog starts
// the upload, signs each part and completes it (upload-* queries), on the
// user's own staging prefix only. Nothing here touches the DOM; the bus,
// S3, the hashers and the storage are given, so tests run it in Node.

import { sha256 } from "@noble/hashes/sha2.js";

/** How many parts are in flight to S3 at once, at most. */
export const IN_FLIGHT = 4;
/** How long a part's PUT is retried (a MinIO restart, a dropped link). */
export const RETRY_FOR_MS = 5 * 60 * 1000;
const RETRY_CAP_MS = 5000;

const STORE_PREFIX = "slipway.upload.";

/**
 * resumeKey is where the state of user's upload of file is kept: the
 * file's name, size and modification time say it is the same file.
 */
export function resumeKey(user, file) {
  return `${STORE_PREFIX}${user}.${JSON.stringify([file.name, file.size, file.lastModified])}`;
}

/** pending lists user's unfinished uploads kept in storage. */
export function pending(storage, user) {
  const out = [];
  for (let i = 0; i < storage.length; i++) {
    const k = storage.key(i);
    if (!k || !k.startsWith(`${STORE_PREFIX}${user}.`)) continue;
    try {
      out.push(JSON.parse(storage.getItem(k)));
    } catch {
      storage.removeItem(k);
    }
  }
  return out;
}

/** catalogAPI is the catalog's upload queries over a bus Session. */
export function catalogAPI(session) {
  const q = (ep) => (req) => session.query("catalog", ep, req);
  return { start: q("upload-start"), parts: q("upload-parts"), presign: q("upload-presign"), complete: q("upload-complete"), abort: q("upload-abort") };
}

/** HTTPError is S3's refusal of a PUT. */
export class HTTPError extends Error {
  constructor(status, text) {
    super(`S3 answered ${status}${text ? `: ${text}` : ""}`);
    this.status = status;
  }
}

/**
 * fetchPut PUTs body (a slice of the file: the browser reads it from disk
 * as it sends, so the page holds none of it) to a presigned part URL with
 * the checksum header it was signed for, and returns the part's ETag
 * (MinIO exposes it to pages of other origins).
 */
export async function fetchPut(url, body, checksum, signal) {
  const r = await fetch(url, { method: "PUT", body, headers: { "x-amz-checksum-sha256": checksum }, signal });
  if (!r.ok) throw new HTTPError(r.status, (await r.text().catch(() => "")).match(/<Message>([^<]*)<\/Message>/)?.[1]);
  const etag = r.headers.get("ETag");
  if (!etag) throw new Error("S3 answered without an ETag: its CORS settings must expose it");
  return etag;
}

/**
 * partSHA256 is the base64 SHA-256 of bytes: SubtleCrypto where the page
 * has it (a secure context), else the same hasher as the whole file's.
 */
export async function partSHA256(bytes) {
  if (globalThis.crypto && crypto.subtle) return base64(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
  return base64(sha256(new Uint8Array(bytes)));
}

export function base64(u8) {
  let s = "";
  for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode(...u8.subarray(i, i + 0x8000));
  return btoa(s);
}

function hex(u8) {
  return Array.from(u8, (b) => b.toString(16).padStart(2, "0")).join("");
}

function unbase64(s) {
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
}

/** compositeChecksum is S3's checksum of a multipart object of these parts. */
export function compositeChecksum(partSums) {
  const all = new Uint8Array(partSums.length * 32);
  partSums.forEach((s, i) => all.set(unbase64(s), i * 32));
  return `${base64(sha256(all))}-${partSums.length}`;
}

const sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      reject(signal.reason);
    }, { once: true });
  });

/**
 * Upload sends one file. opts: {user, file, api (catalogAPI), storage
 * (localStorage), put (fetchPut), partDigest (partSHA256), inFlight,
 * retryForMs, onProgress({phase, sent, read, total, skipped, retrying})}.
 * run() resolves with {path, sha256 (hex), size} once S3 holds the whole
 * file; cancel() stops it and aborts the upload.
 */
export class Upload {
  constructor(opts) {
    this.user = opts.user;
    this.file = opts.file;
    this.api = opts.api;
    this.storage = opts.storage;
    this.put = opts.put || fetchPut;
    this.partDigest = opts.partDigest || partSHA256;
    this.inFlight = opts.inFlight || IN_FLIGHT;
    this.retryForMs = opts.retryForMs ?? RETRY_FOR_MS;
    this.onProgress = opts.onProgress || (() => {});
    this.controller = new AbortController();
    this.key = resumeKey(this.user, this.file);
    this.progress = { phase: "starting", sent: 0, read: 0, total: this.file.size, skipped: 0, retrying: "" };
  }

  report(change) {
    Object.assign(this.progress, change);
    this.onProgress({ ...this.progress });
  }

  /** run uploads the file, resuming what storage says S3 holds. */
  async run() {
    const signal = this.controller.signal;
    const { rec, held } = await this.begin();
    this.rec = rec;
    this.report({ phase: "uploading" });
    const whole = sha256.create();
    const done = new Array(rec.parts);
    const sending = new Set();
    let failure = null;
    for (let n = 1; n <= rec.parts; n++) {
      if (failure) break;
      signal.throwIfAborted();
      const start = (n - 1) * rec.part_size;
      const slice = this.file.slice(start, Math.min(start + rec.part_size, this.file.size));
      // The bytes are read once here, for the hashes, and dropped: the PUT
      // sends the slice, which the browser reads from the file again. A
      // file changed in between fails that part's checksum at S3.
      let bytes = await slice.arrayBuffer();
      const size = bytes.byteLength;
      whole.update(new Uint8Array(bytes));
      const sum = await this.partDigest(bytes);
      bytes = null;
      this.report({ read: start + size });
      const h = held.get(n);
      if (h && h.checksum_sha256 === sum && h.size === size) {
        done[n - 1] = { number: n, etag: h.etag, checksum_sha256: sum };
        this.report({ sent: this.progress.sent + size, skipped: this.progress.skipped + 1 });
        continue;
      }
      const p = this.sendPart(n, slice, sum).then(
        (part) => {
          done[n - 1] = part;
          this.report({ sent: this.progress.sent + size });
        },
        (err) => {
          failure = failure || err;
        },
      );
      sending.add(p);
      p.finally(() => sending.delete(p));
      if (sending.size >= this.inFlight) await Promise.race(sending);
    }
    await Promise.all(sending);
    if (failure) throw failure;
    signal.throwIfAborted();
    return this.finish(done, hex(whole.digest()));
  }

  /**
   * begin is the upload to continue, with the parts S3 holds, when storage
   * has one for this file that the catalog still knows; else a new one.
   */
  async begin() {
    const saved = this.storage.getItem(this.key);
    if (saved) {
      const rec = JSON.parse(saved);
      try {
        const { parts } = await this.api.parts({ path: rec.path, upload_id: rec.upload_id });
        this.report({ phase: "resuming" });
        return { rec, held: new Map(parts.map((p) => [p.number, p])) };
      } catch (err) {
        if (err.code !== "404") throw err; // the catalog's NotFound
        this.storage.removeItem(this.key); // completed, aborted or expired: start again
      }
    }
    const st = await this.api.start({ name: this.file.name, size: this.file.size });
    const rec = {
      user: this.user, name: this.file.name, size: this.file.size, lastModified: this.file.lastModified,
      path: st.path, upload_id: st.upload_id, part_size: st.part_size, parts: st.parts,
    };
    this.storage.setItem(this.key, JSON.stringify(rec));
    return { rec, held: new Map() };
  }

  /**
   * sendPart signs and PUTs part n, again with a fresh URL after a network
   * error, a 5xx or a 403 (an expired URL) until retryForMs has passed. A
   * 400 is final: S3 found other bytes than the SHA-256 signed for.
   */
  async sendPart(n, body, sum) {
    const signal = this.controller.signal;
    const deadline = Date.now() + this.retryForMs;
    for (let attempt = 0; ; attempt++) {
      try {
        const { urls } = await this.api.presign({ path: this.rec.path, upload_id: this.rec.upload_id, parts: [{ number: n, checksum_sha256: sum }] });
        const etag = await this.put(urls[0].url, body, sum, signal);
        if (this.progress.retrying) this.report({ retrying: "" });
        return { number: n, etag, checksum_sha256: sum };
      } catch (err) {
        signal.throwIfAborted();
        if (err instanceof HTTPError && err.status >= 400 && err.status < 500 && err.status !== 403 && err.status !== 408 && err.status !== 429) {
          throw new Error(`part ${n}: ${err.message} (the file changed while it was read?)`);
        }
        if (Date.now() > deadline) throw new Error(`part ${n}: still failing after ${Math.round(this.retryForMs / 1000)}s: ${err.message}`);
        this.report({ retrying: `part ${n}: ${err.message}; trying again` });
        await sleep(Math.min(RETRY_CAP_MS, 250 * 2 ** attempt), signal);
      }
    }
  }

  /** finish completes the upload and checks S3's checksum and size. */
  async finish(done, wholeHex) {
    this.report({ phase: "completing" });
    const reply = await this.api.complete({ path: this.rec.path, upload_id: this.rec.upload_id, parts: done });
    this.storage.removeItem(this.key);
    const want = compositeChecksum(done.map((p) => p.checksum_sha256));
    if (reply.size !== this.file.size) throw new Error(`S3 assembled ${reply.size} bytes of the file's ${this.file.size}`);
    if (reply.s3_checksum && reply.s3_checksum !== want) throw new Error(`S3's checksum ${reply.s3_checksum} is not the parts' ${want}`);
    this.report({ phase: "uploaded" });
    return { path: reply.path, sha256: wholeHex, size: reply.size };
  }

  /** cancel stops sending and aborts the upload; S3 drops its parts. */
  async cancel() {
    this.controller.abort(new Error("upload cancelled"));
    this.storage.removeItem(this.key);
    if (this.rec) await this.api.abort({ path: this.rec.path, upload_id: this.rec.upload_id }).catch(() => {});
  }
}
