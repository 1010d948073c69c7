// The console's page: log in with a .creds file, then the live image list
// and an image's detail view with its actions. State lives in store.js;
// NATS in bus.js; this file only wires them to the DOM. The other views
// (views.js: create, VMs, marketplaces) have modules of their own.

import { Session } from "./bus.js";
import { $, el, fillDL, rowKey, say } from "./dom.js";
import { emptyProgress, readProgress, reduceProgress } from "./progress.js";
import { COLUMNS, emptyState, images, knows, permissionRows, reduce, row } from "./store.js";
import { attachUploads, detachUploads } from "./uploadview.js";
import { initViews, renderImageExtras, renderImports, startViews, stopViews } from "./views.js";

// config is /config.json: {nats_ws_url, prefix, names: {states, types}}.
let config = null;
let session = null;
let state = emptyState();
let selected = null; // the ID of the image the detail view shows
let progress = emptyProgress(); // the running imports' phases (progress.js)
// chain runs the list query and then each event, one at a time.
let chain = Promise.resolve();

function dispatch(action) {
  state = reduce(state, action);
  render();
}

// --- log in -----------------------------------------------------------------

async function readCredsInput() {
  const file = $("#creds-file").files[0];
  if (file) return file.text();
  return $("#creds-text").value;
}

async function login(ev) {
  ev.preventDefault();
  say("info", "Logging in…");
  try {
    const text = await readCredsInput();
    session = await Session.connect(config.nats_ws_url, config.prefix, text);
  } catch (err) {
    say("error", `Log in failed: ${err.message || err}`);
    return;
  }
  // The file is not kept: the NATS client holds what it needs in memory.
  $("#creds-text").value = "";
  $("#creds-file").value = "";
  $("#login").hidden = true;
  $("#main").hidden = false;
  $("#whoami").textContent = session.user;
  say("info", `Logged in as ${session.user}.`);
  attachUploads(session, config, say);
  watchStatus();
  // One event at a time, in order, after the list: a state change must not
  // overtake the show query that an event about a new image waits for.
  chain = loadImages();
  session.watch("catalog", (ev) => {
    const s = session;
    chain = chain.then(() => s === session && onCatalogEvent(ev)).catch((err) => say("error", `Event ${ev.name}: ${err.message}`));
  });
  startViews({ session, config, showImage });
  await chain;
  $("#images").focus();
}

// showImage opens the Images view on image id (after a create or an import).
function showImage(id) {
  selected = id;
  render();
}

async function logout() {
  detachUploads();
  if (session) await session.close().catch(() => {});
  session = null;
  stopViews();
  state = emptyState();
  progress = emptyProgress();
  selected = null;
  $("#main").hidden = true;
  $("#login").hidden = false;
  say("info", "Logged out.");
  $("#creds-file").focus();
}

// watchStatus lists the images again after a reconnect: events sent
// while the connection was down are lost, the list is not.
async function watchStatus() {
  const s = session;
  for await (const st of s.nc.status()) {
    if (s !== session) return;
    if (st.type === "disconnect") say("error", "Connection to NATS lost; reconnecting…");
    if (st.type === "reconnect") {
      say("info", "Reconnected.");
      chain = chain.then(loadImages);
    }
  }
}

async function loadImages() {
  dispatch({ type: "loading" });
  try {
    const list = await session.query("catalog", "list", {});
    dispatch({ type: "loaded", images: list || [] });
  } catch (err) {
    say("error", `Listing images failed: ${err.message}`);
  }
}

// --- events -----------------------------------------------------------------

function entryOf(ev, text) {
  return { time: ev.time, event: ev.name, text };
}

// onCatalogEvent applies one catalog event. An event about an image the
// store does not list is checked with the show query: the catalog, not
// the event, says whether this user may see the image.
async function onCatalogEvent(ev) {
  const id = Number(ev.id);
  switch (ev.name) {
    case "image-progress": {
      const p = readProgress(ev, Date.now());
      if (p && knows(state, id)) {
        progress = reduceProgress(progress, p);
        render();
      }
      return;
    }
    case "image-created":
    case "image-updated":
      if (knows(state, id) && accessChanged(state.images[id], ev.data)) {
        // chown, chgrp or chmod: ask the catalog again whether this user
        // may still see it.
        await lookUp(id, entryOf(ev, describeUpdate(ev)), true);
      } else if (knows(state, id)) {
        dispatch({ type: "upsert", image: ev.data, entry: entryOf(ev, describeUpdate(ev)) });
      } else {
        await lookUp(id, entryOf(ev, describeUpdate(ev)));
      }
      return;
    case "state-changed":
      if (ev.data.to !== "LOCKED") progress = reduceProgress(progress, { type: "finished", id });
      if (knows(state, id)) {
        dispatch({ type: "state", id, to: ev.data.to, error: ev.data.error, entry: entryOf(ev, `${ev.data.from || "new"} → ${ev.data.to}${ev.data.error ? `: ${ev.data.error}` : ""}`) });
      } else {
        await lookUp(id, null);
      }
      return;
    case "image-deleted":
      progress = reduceProgress(progress, { type: "finished", id });
      dispatch({ type: "deleted", id });
      if (selected === id) selected = null;
      render();
      return;
  }
}

function describeUpdate(ev) {
  if (ev.name === "image-created") return `created (${ev.data.state})`;
  return `updated: ${ev.data.name}, ${ev.data.state}${ev.data.persistent ? ", persistent" : ""}`;
}

// accessChanged tells whether who may see an image changed between two
// records of it.
function accessChanged(before, after) {
  return before.user !== after.user || before.group !== after.group || before.permissions !== after.permissions;
}

// lookUp asks the catalog for image id as this user and shows what it
// answers; when it refuses (not ours to see, or gone already), a listed
// image is dropped if forget is set.
async function lookUp(id, entry, forget) {
  let img;
  try {
    img = await session.query("catalog", "show", { id });
  } catch {
    if (forget) {
      dispatch({ type: "forget", id });
      if (selected === id) selected = null;
      render();
    }
    return;
  }
  dispatch({ type: "upsert", image: img, checked: true, entry });
}

// --- actions ----------------------------------------------------------------

// ACTIONS are the catalog commands the detail view sends, with the events
// that answer them (as the CLI's image commands await).
const UPDATED = ["image-updated", "state-changed"];
const ACTIONS = {
  enable: { verb: "image-enable", accept: UPDATED, done: (img) => img.state === "READY" },
  disable: { verb: "image-disable", accept: UPDATED, done: (img) => img.state === "DISABLED" },
  persistent: { verb: "image-persistent", accept: UPDATED, done: (img) => img.persistent },
  nonpersistent: { verb: "image-nonpersistent", accept: UPDATED, done: (img) => !img.persistent },
  delete: { verb: "image-delete", accept: ["image-deleted"] },
};

async function act(name, extra) {
  const img = state.images[selected];
  if (!img) return;
  const a = ACTIONS[name] || extra;
  if (a.done && a.done(img)) {
    say("info", `Image ${img.id}: nothing to ${a.verb.replace("image-", "")}.`);
    return;
  }
  say("info", `Image ${img.id}: ${a.verb.replace("image-", "")}…`);
  try {
    await session.command("catalog", a.verb, { id: img.id, ...(a.data || {}) }, a.accept, String(img.id));
    say("info", `Image ${img.id}: ${a.verb.replace("image-", "")} done.`);
  } catch (err) {
    say("error", `Image ${img.id}: ${a.verb.replace("image-", "")} refused: ${err.message}`);
  }
}

function rename(ev) {
  ev.preventDefault();
  const name = $("#rename-name").value.trim();
  if (!name) return say("error", "Rename: give the new name.");
  act("rename", { verb: "image-rename", data: { name }, accept: UPDATED, done: (img) => img.name === name });
}

// clone copies the image into a new one of this user's (image-clone): the
// clone appears in the list from the catalog's events and is READY once
// the copy is checked.
function clone(ev) {
  ev.preventDefault();
  const name = $("#clone-name").value.trim();
  if (!name) return say("error", "Clone: give the new image's name.");
  const datastore = $("#clone-datastore").value.trim();
  act("clone", { verb: "image-clone", data: datastore ? { name, datastore } : { name }, accept: ["image-created"] });
}

function chmod(ev) {
  ev.preventDefault();
  const permissions = $("#chmod-bits").value.trim();
  if (!/^[0-7]{3}$/.test(permissions)) return say("error", `Chmod: "${permissions}" is not three octal digits, e.g. 640.`);
  act("chmod", { verb: "image-chmod", data: { permissions }, accept: UPDATED, done: (img) => img.permissions === permissions });
}

// --- rendering --------------------------------------------------------------

function render() {
  renderList();
  renderImports($("#imports"), images(state), progress, select);
  renderDetail();
}

function renderList() {
  const tbody = $("#images tbody");
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.id : null;
  tbody.replaceChildren();
  const list = images(state);
  for (const img of list) {
    const cells = row(img, config.names);
    const tr = el("tr", {
      "data-id": String(img.id),
      "data-state": img.state,
      tabindex: "0",
      "data-selected": String(selected === img.id),
      onclick: () => select(img.id),
      onkeydown: (e) => rowKey(e, () => select(img.id)),
    });
    cells.forEach((c, i) => tr.append(el("td", { "data-col": COLUMNS[i] }, c)));
    tbody.append(tr);
  }
  $("#empty").hidden = list.length > 0 || !state.loaded;
  if (focused) {
    const again = tbody.querySelector(`tr[data-id="${focused}"]`);
    if (again) again.focus();
  }
}

function select(id) {
  if (selected !== id) {
    $("#rename-name").value = "";
    $("#chmod-bits").value = "";
    $("#clone-name").value = "";
    $("#confirm-delete").hidden = true;
  }
  selected = id;
  render();
  $("#detail").focus();
}

function renderDetail() {
  const box = $("#detail");
  const img = state.images[selected];
  box.hidden = !img;
  if (!img) return;
  $("#detail-title").textContent = `Image ${img.id}: ${img.name}`;
  const fields = [
    ["ID", img.id], ["NAME", img.name], ["USER", img.user], ["GROUP", img.group], ["DATASTORE", img.datastore],
    ["TYPE", img.type], ["STATE", img.state], ["PERSISTENT", img.persistent ? "Yes" : "No"], ["FORMAT", img.format],
    ["SIZE", img.size], ["SHA256", img.sha256], ["ORIGIN", img.origin], ["RUNNING VMS", img.rvms], ["ERROR", img.error],
    ["REGISTERED", img.created_at], ["UPDATED", img.updated_at],
  ];
  fillDL($("#detail-attrs"), fields.concat(Object.entries(img.attributes || {}).sort()));
  const perms = $("#detail-perms tbody");
  perms.replaceChildren();
  // The bits as oneimage show writes them, then each right spelled out.
  const right = (on, name) => el("td", { class: on ? "yes" : "no", "aria-label": `${name}: ${on ? "yes" : "no"}` }, on ? "✓" : "—");
  for (const [who, bits] of permissionRows(img.permissions)) {
    perms.append(el("tr", {}, el("th", { scope: "row" }, who), el("td", {}, bits), right(bits[0] === "u", "use"), right(bits[1] === "m", "manage"), right(bits[2] === "a", "admin")));
  }
  $("#detail-octal").textContent = img.permissions || "";
  const hist = $("#detail-history");
  hist.replaceChildren();
  for (const h of state.history[img.id] || []) hist.append(el("li", {}, el("time", {}, h.time), ` ${h.event}: ${h.text}`));
  $("#history-empty").hidden = (state.history[img.id] || []).length > 0;
  renderImageExtras(img, progress);
}

// --- start ------------------------------------------------------------------

async function start() {
  try {
    const r = await fetch("config.json", { cache: "no-store" });
    config = await r.json();
  } catch (err) {
    say("error", `The console's configuration could not be read: ${err.message}`);
    return;
  }
  $("#nats-url").textContent = config.nats_ws_url;
  $("#ca-hint").hidden = !config.has_ca;
  const head = $("#images thead tr");
  for (const c of COLUMNS) head.append(el("th", { scope: "col" }, c));
  $("#login-form").addEventListener("submit", login);
  $("#logout").addEventListener("click", logout);
  for (const name of Object.keys(ACTIONS)) {
    if (name === "delete") continue;
    $(`#act-${name}`).addEventListener("click", () => act(name));
  }
  $("#act-delete").addEventListener("click", () => {
    $("#confirm-delete").hidden = false;
    $("#confirm-delete").focus();
  });
  $("#confirm-delete").addEventListener("click", () => {
    $("#confirm-delete").hidden = true;
    act("delete");
  });
  $("#rename-form").addEventListener("submit", rename);
  $("#chmod-form").addEventListener("submit", chmod);
  $("#clone-form").addEventListener("submit", clone);
  initViews();
  $("#close-detail").addEventListener("click", () => {
    const id = selected;
    selected = null;
    render();
    const tr = document.querySelector(`#images tr[data-id="${id}"]`);
    if (tr) tr.focus();
  });
  document.body.dataset.ready = "true";
}

start();
