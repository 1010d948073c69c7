// The create view: register an image from a URL (http(s)://, s3://), from
// a container image (docker://, built by the builder), or empty (a
// DATABLOCK of a size), with the options of `slipway image create`; an app
// of a marketplace is imported from the marketplaces view. The command is
// the CLI's (createspec.js builds and checks it); the answer is the
// catalog's image-created, or its refusal, shown as it is.

import { $, el, formValues, say } from "./dom.js";
import { dockerURL, imageCreate } from "./createspec.js";

let ctx = null;

/** init wires the form once; go(view) switches views. */
export function init(go) {
  $("#create-form").addEventListener("submit", submit);
  for (const r of document.querySelectorAll('#create-form input[name="source"]')) r.addEventListener("change", sourceChanged);
  $("#create-to-markets").addEventListener("click", () => go("markets"));
  sourceChanged();
}

export function start(c) {
  ctx = c;
  loadDatastores();
}

export function stop() {
  ctx = null;
  $("#create-form").reset();
  sourceChanged();
}

/** opened: the view is shown. */
export function opened() {
  $("#create-name").focus();
}

// sourceChanged shows the fields of the chosen source.
function sourceChanged() {
  const source = formValues($("#create-form")).source || "url";
  for (const box of document.querySelectorAll("#create-form [data-source]")) box.hidden = !box.dataset.source.split(" ").includes(source);
}

// loadDatastores offers the catalog's datastores to every datastore field.
async function loadDatastores() {
  try {
    const list = await ctx.session.query("catalog", "datastores", {});
    $("#datastores").replaceChildren(...(list || []).map((ds) => el("option", { value: ds.name })));
  } catch (err) {
    say("error", `Listing datastores failed: ${err.message}`);
  }
}

// spec is the image-create command the form says.
function spec(f) {
  if (f.source === "docker") {
    const path = dockerURL({ ref: f.ref, tag: f.tag, size: f.dsize, filesystem: f.dfs, format: f.dformat });
    return imageCreate({ name: f.name, datastore: f.datastore, description: f.description, type: f.type, persistent: f.persistent, path });
  }
  return imageCreate(f);
}

async function submit(ev) {
  ev.preventDefault();
  const s = ctx && ctx.session;
  if (!s) return;
  let cmd;
  try {
    cmd = spec(formValues($("#create-form")));
  } catch (err) {
    say("error", `Create: ${err.message}.`);
    return;
  }
  say("info", `Creating image ${cmd.name}…`);
  const button = $("#create-submit");
  button.disabled = true;
  try {
    const answer = await s.command("catalog", "image-create", cmd, ["image-created"]);
    const id = answer.data.id;
    say("info", `Image ${id} (${cmd.name}) registered; its import runs: the bars below show it.`);
    $("#create-form").reset();
    sourceChanged();
    ctx.showImage(id);
  } catch (err) {
    say("error", `Create ${cmd.name} refused: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}
