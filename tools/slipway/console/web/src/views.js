// The console's views beside the image list: switching between them (a
// tab bar, usable by keyboard), the running imports' progress bars, the
// image detail's snapshots, and starting and stopping the create, VM and
// marketplace views when a person logs in and out.

import { $, el } from "./dom.js";
import { eta, percent, phasesOf, phaseText } from "./progress.js";
import { humanSize } from "./store.js";
import * as create from "./create.js";
import * as markets from "./markets.js";
import * as vms from "./vms.js";

/** VIEWS are the tabs, in their order: the section each shows. */
export const VIEWS = ["images", "create", "vms", "markets"];
const opened = { vms: vms.opened, markets: markets.opened, create: create.opened };

// ctx is what the views share while logged in: {session, config, showImage, showView}.
let ctx = null;

/** initViews wires the tab bar: a click, or the arrow keys between tabs. */
export function initViews() {
  const tabs = [...document.querySelectorAll('#views [role="tab"]')];
  for (const tab of tabs) {
    tab.addEventListener("click", () => showView(tab.dataset.view));
    tab.addEventListener("keydown", (e) => {
      const i = tabs.indexOf(tab);
      const next = e.key === "ArrowRight" ? tabs[(i + 1) % tabs.length] : e.key === "ArrowLeft" ? tabs[(i + tabs.length - 1) % tabs.length] : null;
      if (next) {
        e.preventDefault();
        showView(next.dataset.view);
        next.focus();
      }
    });
  }
  create.init((view) => showView(view));
  vms.init();
  markets.init();
}

/** showView shows one view's section and marks its tab. */
export function showView(view) {
  for (const v of VIEWS) {
    $(`#view-${v}`).hidden = v !== view;
    const tab = $(`#tab-${v}`);
    tab.setAttribute("aria-selected", String(v === view));
    tab.tabIndex = v === view ? 0 : -1;
  }
  document.body.dataset.view = view;
  if (ctx && opened[view]) opened[view]();
}

/** startViews starts the views for a logged-in session. */
export function startViews(c) {
  ctx = {
    ...c,
    showView,
    showImage: (id) => {
      showView("images");
      c.showImage(id);
    },
  };
  create.start(ctx);
  vms.start(ctx);
  markets.start(ctx);
  showView("images");
}

/** stopViews ends them at log out. */
export function stopViews() {
  vms.stop();
  markets.stop();
  create.stop();
  ctx = null;
}

// bar is one phase: a <progress> (indeterminate when the total is
// unknown) and its line of text: bytes, rate and time left.
function bar(p) {
  const pct = p.finished ? 100 : percent(p);
  const meter = el("progress", { max: "100", "aria-label": p.label });
  if (pct >= 0) meter.value = pct;
  const left = eta(p);
  return el("div", { class: "phase", "data-phase": p.label, "data-finished": String(p.finished), "data-done": String(p.done), "data-eta": left === null ? "" : String(Math.round(left)) },
    meter, el("span", { class: "phase-text" }, phaseText(p)));
}

/**
 * renderImports lists the images being imported (LOCKED with progress
 * reported), a bar per phase; a click on one opens it.
 */
export function renderImports(box, list, progress, open) {
  const running = list.filter((img) => phasesOf(progress, img.id).length > 0);
  box.hidden = running.length === 0;
  const ul = box.querySelector("ul");
  ul.replaceChildren();
  for (const img of running) {
    const name = el("button", { type: "button", class: "link", onclick: () => open(img.id) }, `Image ${img.id}: ${img.name}`);
    ul.append(el("li", { "data-id": String(img.id) }, name, ...phasesOf(progress, img.id).map(bar)));
  }
}

/**
 * renderImageExtras fills the image detail's progress and snapshots:
 * internal qcow2 snapshots as `slipway image snapshot-list` lists them.
 */
export function renderImageExtras(img, progress) {
  const phases = phasesOf(progress, img.id);
  $("#detail-progress").replaceChildren(...phases.map(bar));
  $("#detail-progress-box").hidden = phases.length === 0;
  const snaps = img.snapshots || [];
  $("#snapshots-empty").hidden = snaps.length > 0;
  $("#detail-snapshots").hidden = snaps.length === 0;
  $("#detail-snapshots tbody").replaceChildren(...snaps.map((s) => el("tr", { "data-active": String(!!s.active) },
    el("td", {}, String(s.id)), el("td", {}, s.name), el("td", {}, s.parent >= 0 ? String(s.parent) : "-"),
    el("td", {}, s.active ? "yes" : "no"), el("td", {}, s.date || ""), el("td", {}, humanSize(s.size || 0)))));
}
