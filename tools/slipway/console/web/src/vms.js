// The VMs view: the launcher's VMs the user may use, live (the vms query,
// then the launcher's events, checked with the vm query as images are);
// the templates to instantiate; a VM's detail with its disks, its serial
// console and the commands `slipway vm terminate|poweroff|resume` send.
//
// The console has no event: while a VM's detail is open its console is
// read with the launcher's console query from the offset reached, once a
// second (what `slipway vm console` reads, a piece at a time).

import { $, el, fillDL, fillTable, formValues, header, say } from "./dom.js";
import { permissionRows, humanSize } from "./store.js";
import { consoleTail, emptyVMs, hasVM, reduceVMs, vmActions, vmList, vmRow, VM_COLUMNS } from "./vmstore.js";

/** How often an open VM's console is read. */
export const CONSOLE_INTERVAL_MS = 1000;

let ctx = null;
let state = emptyVMs();
let templates = [];
let selected = null;
let chain = Promise.resolve();
let tail = { id: null, text: "", offset: 0, timer: null, busy: false };

export function init() {
  header($("#vms thead tr"), VM_COLUMNS);
  header($("#templates thead tr"), ["ID", "NAME", "USER", "GROUP"]);
  $("#vms-all").addEventListener("change", render);
  $("#instantiate-form").addEventListener("submit", instantiate);
  $("#close-vm").addEventListener("click", () => select(null));
  for (const verb of ["terminate", "poweroff", "resume"]) $(`#vm-${verb}`).addEventListener("click", () => confirmOr(verb));
  $("#vm-confirm-terminate").addEventListener("click", () => {
    $("#vm-confirm-terminate").hidden = true;
    command("terminate");
  });
}

export function start(c) {
  ctx = c;
  state = emptyVMs();
  chain = load();
  const s = c.session;
  c.session.watch("launcher", (ev) => {
    chain = chain.then(() => ctx && ctx.session === s && onEvent(ev)).catch((err) => say("error", `Event ${ev.name}: ${err.message}`));
  });
}

export function stop() {
  ctx = null;
  stopTail();
  state = emptyVMs();
  templates = [];
  selected = null;
}

export function opened() {
  render();
}

async function load() {
  state = reduceVMs(state, { type: "loading" });
  try {
    const [list, tmpls] = await Promise.all([ctx.session.query("launcher", "vms", {}), ctx.session.query("launcher", "templates", {})]);
    templates = tmpls || [];
    state = reduceVMs(state, { type: "loaded", vms: list || [] });
  } catch (err) {
    say("error", `Listing VMs failed: ${err.message}`);
  }
  render();
}

// onEvent applies one launcher event: a VM the store does not list is
// asked of the launcher, which answers only one this user may use.
async function onEvent(ev) {
  const id = Number(ev.id);
  if (ev.name === "vm-state-changed" && hasVM(state, id)) {
    state = reduceVMs(state, { type: "state", id, to: ev.data.to, reason: ev.data.reason });
    if (id === selected) await refresh(id); // disks, kernel, error
  } else if (ev.name === "vm-created" || ev.name === "vm-state-changed") {
    await refresh(id);
  } else if (ev.name.startsWith("template-")) {
    templates = (await ctx.session.query("launcher", "templates", {}).catch(() => templates)) || [];
  } else {
    return;
  }
  render();
}

async function refresh(id) {
  try {
    state = reduceVMs(state, { type: "upsert", vm: await ctx.session.query("launcher", "vm", { id }), checked: true });
  } catch {
    // Not this user's to see, or gone.
  }
}

function render() {
  if (!ctx) return;
  const list = vmList(state, $("#vms-all").checked);
  const now = Date.now();
  fillTable($("#vms tbody"), VM_COLUMNS, list.map((vm) => vmRow(vm, ctx.config.names.vm_states, now)), (i) => String(list[i].id), (i) => select(list[i].id), String(selected));
  for (const tr of $("#vms tbody").children) tr.dataset.state = state.vms[tr.dataset.id].state;
  $("#vms-empty").hidden = list.length > 0 || !state.loaded;
  fillTable($("#templates tbody"), ["ID", "NAME", "USER", "GROUP"], templates.map((t) => [String(t.id), t.name, t.user || "", t.group || ""]),
    (i) => String(templates[i].id), (i) => pickTemplate(templates[i]), $("#instantiate-template").value);
  $("#templates-empty").hidden = templates.length > 0;
  renderDetail();
}

function pickTemplate(t) {
  $("#instantiate-template").value = String(t.id);
  $("#instantiate-name").focus();
  render();
}

// instantiate makes a VM of the chosen template (`slipway template
// instantiate`): the launcher answers vm-created, and the VM's boot
// follows as events.
async function instantiate(ev) {
  ev.preventDefault();
  const f = formValues($("#instantiate-form"));
  const tid = Number(f.template);
  if (!/^[0-9]+$/.test(f.template || "")) return say("error", "Instantiate: pick a template (click its row, or give its ID).");
  const req = { template_id: tid };
  if (f.name.trim()) req.name = f.name.trim();
  say("info", `Instantiating template ${tid}…`);
  try {
    const answer = await ctx.session.command("launcher", "instantiate", req, ["vm-created"]);
    say("info", `VM ${answer.data.id} (${answer.data.name}) created; it boots.`);
    $("#instantiate-name").value = "";
    await refresh(answer.data.id);
    select(answer.data.id);
  } catch (err) {
    say("error", `Instantiate template ${tid} refused: ${err.message}`);
  }
}

function select(id) {
  if (selected !== id) {
    stopTail();
    $("#vm-confirm-terminate").hidden = true;
  }
  selected = id;
  render();
  if (id !== null) {
    startTail(id);
    $("#vm-detail").focus();
  }
}

function renderDetail() {
  const vm = state.vms[selected];
  $("#vm-detail").hidden = !vm;
  if (!vm) return;
  $("#vm-title").textContent = `VM ${vm.id}: ${vm.name}`;
  $("#vm-detail").dataset.state = vm.state;
  fillDL($("#vm-attrs"), [["ID", vm.id], ["NAME", vm.name], ["USER", vm.user], ["GROUP", vm.group], ["STATE", vm.state],
    ["TEMPLATE", vm.template_id], ["VCPU", vm.vcpu], ["MEMORY", humanSize((vm.memory_mib || 0) * 1048576)], ["START TIME", vm.created_at],
    ["KERNEL", vm.kernel && `${vm.kernel.name} (${vm.kernel.image_id})`], ["CMDLINE", vm.cmdline],
    ["ACCELERATOR", vm.accelerator && vm.accelerator.accel], ["REASON", vm.reason], ["ERROR", vm.error]]);
  $("#vm-perms").textContent = permissionRows(vm.permissions).map(([who, bits]) => `${who} ${bits}`).join("   ");
  $("#vm-disks tbody").replaceChildren(...(vm.disks || []).map((d) => el("tr", {},
    ...[d.disk_id, d.target, `${d.image} (${d.image_id})`, d.type, d.format, humanSize(d.size || 0), d.persistent ? "Yes" : "No", d.readonly ? "Yes" : "No"].map((c) => el("td", {}, String(c ?? ""))))));
  const acts = vmActions(vm);
  for (const verb of ["terminate", "poweroff", "resume"]) $(`#vm-${verb}`).disabled = !acts.includes(verb);
  $("#vm-hard-box").hidden = !acts.includes("poweroff") && !acts.includes("terminate");
}

function confirmOr(verb) {
  if (verb !== "terminate") return command(verb);
  $("#vm-confirm-terminate").hidden = false;
  $("#vm-confirm-terminate").focus();
}

// command sends terminate, poweroff or resume as the CLI does and shows
// the launcher's answer: the state the VM moves to, or its refusal.
async function command(verb) {
  const vm = state.vms[selected];
  if (!vm) return;
  const req = verb === "resume" ? { id: vm.id } : { id: vm.id, hard: $("#vm-hard").checked };
  say("info", `VM ${vm.id}: ${verb}…`);
  try {
    const answer = await ctx.session.command("launcher", verb, req, ["vm-state-changed"]);
    say("info", `VM ${vm.id}: ${answer.data.to}.`);
  } catch (err) {
    say("error", `VM ${vm.id}: ${verb} refused: ${err.message}`);
  }
}

// --- the console tail ---------------------------------------------------------

function startTail(id) {
  tail = { id, text: "", offset: 0, timer: null, busy: false };
  $("#vm-console").textContent = "";
  readConsole();
  tail.timer = setInterval(readConsole, CONSOLE_INTERVAL_MS);
}

function stopTail() {
  if (tail.timer) clearInterval(tail.timer);
  tail = { id: null, text: "", offset: 0, timer: null, busy: false };
}

// readConsole asks for what the console wrote since the offset reached;
// a DONE VM's console is read to its end, then no more.
async function readConsole() {
  const t = tail;
  if (!ctx || t.id === null || t.busy) return;
  t.busy = true;
  try {
    const reply = await ctx.session.query("launcher", "console", { id: t.id, offset: t.offset });
    if (tail !== t) return;
    const next = consoleTail(t.text, t.offset, reply);
    const grew = next.text !== t.text;
    Object.assign(t, next);
    const pre = $("#vm-console");
    if (grew) {
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent = t.text;
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    }
    $("#vm-console-size").textContent = `${reply.size} bytes`;
    const vm = state.vms[t.id];
    if (vm && vm.state === "DONE" && reply.next >= reply.size && t.timer) {
      clearInterval(t.timer);
      t.timer = null;
    }
  } catch (err) {
    if (tail === t) $("#vm-console-size").textContent = `console: ${err.message}`;
  } finally {
    t.busy = false;
  }
}
