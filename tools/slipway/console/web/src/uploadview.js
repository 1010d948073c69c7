// The upload section of the page: pick a disk file, send it to S3 in
// presigned parts (upload.js), then create the image from it. Unfinished
// uploads kept in localStorage are listed, to be resumed by picking the
// same file again. main.js calls attachUploads after log in and
// detachUploads at log out; everything else is here.

import { catalogAPI, pending, Upload } from "./upload.js";
import { humanSize } from "./store.js";

const $ = (sel) => document.querySelector(sel);

let session = null;
let current = null; // the Upload running, if any
let say = () => {};

/**
 * attachUploads wires the upload form to s (a bus Session); tell(kind,
 * text) shows a message as the rest of the page does. config.s3_url tells
 * whether the server lets the page reach S3 at all.
 */
export function attachUploads(s, config, tell) {
  session = s;
  say = tell;
  $("#upload").hidden = !config.s3_url;
  if (!config.s3_url) return;
  $("#upload-form").onsubmit = start;
  $("#upload-cancel").onclick = cancel;
  $("#upload-file").onchange = () => {
    const f = $("#upload-file").files[0];
    if (f && !$("#upload-name").value) $("#upload-name").value = f.name;
  };
  showPending();
}

/** detachUploads stops a running upload (it stays resumable) and forgets s. */
export function detachUploads() {
  if (current) current.controller.abort(new Error("logged out"));
  current = null;
  session = null;
}

// showPending lists this user's unfinished uploads.
function showPending() {
  const list = pending(localStorage, session.user);
  const box = $("#upload-pending");
  box.hidden = list.length === 0;
  box.textContent = list.length ? `Unfinished: ${list.map((p) => `${p.name} (${humanSize(p.size)})`).join(", ")}. Pick the same file again to resume: the parts S3 has are not sent again.` : "";
}

function setPhase(phase) {
  $("#upload").dataset.phase = phase;
  const busy = phase === "uploading" || phase === "resuming" || phase === "starting" || phase === "completing" || phase === "creating";
  $("#upload-button").disabled = busy;
  $("#upload-cancel").hidden = !busy || phase === "creating";
}

function onProgress(p) {
  const bar = $("#upload-progress");
  bar.hidden = false;
  bar.max = Math.max(p.total, 1);
  bar.value = p.sent;
  setPhase(p.phase);
  Object.assign($("#upload").dataset, { sent: p.sent, skipped: p.skipped });
  const skipped = p.skipped ? `, ${p.skipped} part${p.skipped > 1 ? "s" : ""} already in S3` : "";
  $("#upload-status").textContent = `${p.phase}: ${humanSize(p.sent)} of ${humanSize(p.total)} sent${skipped}${p.retrying ? ` (${p.retrying})` : ""}`;
}

async function start(ev) {
  ev.preventDefault();
  const file = $("#upload-file").files[0];
  if (!file) return say("error", "Upload: pick a disk file first.");
  const name = $("#upload-name").value.trim() || file.name;
  const type = $("#upload-type").value;
  const s = session;
  current = new Upload({ user: s.user, file, api: catalogAPI(s), storage: localStorage, onProgress });
  say("info", `Uploading ${file.name}…`);
  let up;
  try {
    up = await current.run();
  } catch (err) {
    setPhase("failed");
    if (s === session) say("error", `Upload of ${file.name} failed: ${err.message || err}`);
    showPending();
    return;
  } finally {
    current = null;
  }
  setPhase("creating");
  try {
    // The import checks the whole file's SHA-256 computed here against
    // what it reads from S3.
    const spec = { name, type, path: up.path, staged: true, checksum: `sha256:${up.sha256}`, origin: file.name };
    const ev = await s.command("catalog", "image-create", spec, ["image-created"]);
    setPhase("created");
    $("#upload").dataset.image = String(ev.id);
    say("info", `Image ${ev.id} created from ${file.name} (SHA-256 ${up.sha256}); importing.`);
    $("#upload-form").reset();
  } catch (err) {
    setPhase("failed");
    say("error", `Upload of ${file.name}: image create refused: ${err.message}`);
  }
  showPending();
}

async function cancel() {
  if (!current) return;
  const u = current;
  await u.cancel();
  say("info", `Upload of ${u.file.name} cancelled; S3 dropped its parts.`);
}
