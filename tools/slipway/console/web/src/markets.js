// The marketplaces view: every marketplace of both marketplace services
// (the list query of each, merged), the apps of one or of all with a
// search (the apps query's filter: text in the name or the description),
// and an app's import with `slipway market app import`'s options. The
// import goes to the service that owns the marketplace; its answer is
// app-imported (the image is registered, its VM template sent to the
// launcher) or its refusal, shown as it is.

import { $, el, fillTable, formValues, header, say } from "./dom.js";
import { appImport, FILESYSTEMS } from "./createspec.js";
import { appRow, APP_COLUMNS, MARKET_COLUMNS, MARKET_SERVICES, marketRow, mergeMarkets } from "./marketstore.js";

let ctx = null;
let markets = [];
let apps = [];
let market = null; // the marketplace whose apps are listed (null: all)
let app = null; // the app the import form is for
let asked = 0; // the newest apps query, so an older answer is not shown over it

export function init() {
  header($("#markets thead tr"), MARKET_COLUMNS);
  header($("#apps thead tr"), APP_COLUMNS);
  $("#apps-search").addEventListener("submit", (e) => {
    e.preventDefault();
    loadApps();
  });
  $("#apps-all").addEventListener("click", () => pick(null));
  $("#import-form").addEventListener("submit", submit);
  $("#import-cancel").addEventListener("click", () => openApp(null));
  $("#import-fs").replaceChildren(el("option", { value: "" }, "the marketplace's (else ext4)"), ...FILESYSTEMS.map((f) => el("option", { value: f }, f)));
}

export function start(c) {
  ctx = c;
  const s = c.session;
  // A marketplace created, changed, refreshed or deleted: list again.
  for (const svc of MARKET_SERVICES) {
    s.watch(svc, (ev) => {
      if (ctx && ctx.session === s && ev.name !== "failed" && ev.name !== "app-imported") loadMarkets();
    });
  }
}

export function stop() {
  ctx = null;
  markets = [];
  apps = [];
  market = null;
  app = null;
}

export function opened() {
  loadMarkets();
}

// ask asks every marketplace service endpoint; a service that is not
// running is left out, as the CLI leaves it out, when another answers.
async function ask(endpoint, req) {
  const replies = await Promise.allSettled(MARKET_SERVICES.map((svc) => ctx.session.query(svc, endpoint, req)));
  const ok = replies.map((r, i) => [MARKET_SERVICES[i], r.status === "fulfilled" ? r.value : null]);
  if (replies.every((r) => r.status === "rejected")) throw replies[0].reason;
  return ok;
}

async function loadMarkets() {
  if (!ctx) return;
  try {
    markets = mergeMarkets(await ask("list", {}));
  } catch (err) {
    say("error", `Listing marketplaces failed: ${err.message}`);
  }
  if (market) market = markets.find((m) => m.id === market.id) || null;
  render();
  loadApps();
}

async function loadApps() {
  if (!ctx) return;
  const filter = $("#apps-filter").value.trim();
  const n = ++asked;
  try {
    let list;
    if (market) {
      list = await ctx.session.query(market.service, "apps", { market_id: market.id, filter });
    } else {
      list = (await ask("apps", { filter })).flatMap(([, a]) => a || []);
    }
    if (n !== asked) return;
    apps = (list || []).sort((a, b) => a.id - b.id);
  } catch (err) {
    say("error", `Listing apps failed: ${err.message}`);
  }
  render();
}

function pick(m) {
  market = m;
  openApp(null);
  render();
  loadApps();
}

function render() {
  if (!ctx) return;
  fillTable($("#markets tbody"), MARKET_COLUMNS, markets.map(marketRow), (i) => String(markets[i].id), (i) => pick(markets[i]), market && String(market.id));
  const names = Object.fromEntries(markets.map((m) => [m.id, m.name]));
  fillTable($("#apps tbody"), APP_COLUMNS, apps.map((a) => appRow(a, names[a.market_id] || String(a.market_id))), (i) => String(apps[i].id),
    (i) => openApp(apps[i]), app && String(app.id));
  $("#apps-title").textContent = market ? `Apps of ${market.name}` : "Apps of every marketplace";
  $("#apps-all").hidden = !market;
  $("#apps-empty").hidden = apps.length > 0;
  renderImport();
}

// openApp opens the import form for a (null: closes it).
function openApp(a) {
  app = a;
  $("#import-form").reset();
  if (a) {
    // The image's default name: the app's last path part, as a person would name it.
    $("#import-name").value = a.name.split("/").pop().replace(/[^A-Za-z0-9._-]+/g, "-");
    $("#import-tag").replaceChildren(el("option", { value: "" }, "default (latest, else the first)"), ...(a.tags || []).map((t) => el("option", { value: t }, t)));
  }
  render();
  if (a) $("#import-name").focus();
}

function renderImport() {
  const box = $("#import");
  box.hidden = !app;
  if (!app) return;
  const m = markets.find((x) => x.id === app.market_id);
  $("#import-title").textContent = `Import ${app.name} from ${m ? m.name : app.market_id}`;
  $("#import-about").textContent = [app.description, app.publisher && `by ${app.publisher}`].filter(Boolean).join(" — ");
}

async function submit(ev) {
  ev.preventDefault();
  if (!ctx || !app) return;
  const m = markets.find((x) => x.id === app.market_id);
  if (!m) return say("error", `Import: marketplace ${app.market_id} is not listed.`);
  let req;
  try {
    req = appImport(m, app, formValues($("#import-form")));
  } catch (err) {
    return say("error", `Import ${app.name}: ${err.message}.`);
  }
  say("info", `Importing ${app.name} as ${req.name}…`);
  try {
    const answer = await ctx.session.command(m.service, "app-import", req, ["app-imported"]);
    const d = answer.data;
    say("info", `Image ${d.image_id} (${d.name}): importing ${d.app}; VM template ${d.name} sent to the launcher.`);
    openApp(null);
    ctx.showImage(d.image_id);
  } catch (err) {
    say("error", `Import ${app.name} refused: ${err.message}`);
  }
}
