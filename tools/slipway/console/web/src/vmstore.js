// The console's state store for VMs: a pure reducer, with no DOM and no
// NATS, so that node --test checks it (test/vmstore.test.js).
//
// The launcher's vms query fills it; its events keep it live:
// vm-created (id, name, template_id) and vm-state-changed (id, from, to,
// reason). As with images, every user may watch every event, so an event
// alone never adds a VM: for an ID the store does not list, the page asks
// the launcher's vm query, which answers only a VM this user may use, and
// adds that record ("upsert" with checked). Events that arrive before the
// list are queued and replayed after it.

import { byID, humanSize, listed } from "./store.js";

/** The console tail the detail view keeps, in characters (the newest). */
export const CONSOLE_LIMIT = 256 * 1024;

/** The empty store: nothing listed yet. */
export function emptyVMs() {
  return { loaded: false, vms: {}, queued: [] };
}

/**
 * reduceVMs returns the store after action. Actions:
 *   {type: "loading"}                     a new list query starts
 *   {type: "loaded", vms}                 the vms query's reply
 *   {type: "upsert", vm, checked?}        a record from the vm query (checked may add it)
 *   {type: "state", id, to, reason?}      vm-state-changed of a listed VM
 */
export function reduceVMs(state, action) {
  const listing = listed(state, action, reduceVMs, () => ({ vms: byID(action.vms) }));
  if (listing) return listing;
  switch (action.type) {
    case "upsert":
      if (!action.checked && !hasVM(state, action.vm.id)) return state;
      return { ...state, vms: { ...state.vms, [action.vm.id]: action.vm } };
    case "state": {
      const cur = state.vms[action.id];
      if (!cur) return state;
      const vm = { ...cur, state: action.to };
      if (action.reason) vm.reason = action.reason;
      return { ...state, vms: { ...state.vms, [action.id]: vm } };
    }
    default:
      throw new Error(`vmstore: unknown action ${action.type}`);
  }
}

/** hasVM tells whether the store lists VM id. */
export function hasVM(state, id) {
  return Object.prototype.hasOwnProperty.call(state.vms, id);
}

/** vmList is the listed VMs in ID order; DONE ones only with all (as vm list --all). */
export function vmList(state, all) {
  return Object.values(state.vms)
    .filter((vm) => all || vm.state !== "DONE")
    .sort((a, b) => a.id - b.id);
}

/** VM_COLUMNS are onevm list's, as `slipway vm list` prints them. */
export const VM_COLUMNS = ["ID", "USER", "NAME", "STAT", "CPU", "MEM", "TEMPLATE", "TIME"];

/**
 * vmRow renders a VM as `slipway vm list`'s columns; shortStates is
 * /config.json's names.vm_states, now the time in ms.
 */
export function vmRow(vm, shortStates, now) {
  const st = (shortStates && shortStates[vm.state]) || String(vm.state || "").toLowerCase();
  return [String(vm.id), vm.user || "", vm.name, st, String(Math.max(vm.vcpu || 0, 1)), humanSize((vm.memory_mib || 0) * 1048576),
    String(vm.template_id), age(vm.created_at, now)];
}

/** age is onevm's TIME: how long ago the VM was created, "1d 02:03:04". */
export function age(created, now) {
  const t = Date.parse(created || "");
  if (Number.isNaN(t)) return "-";
  let s = Math.max(0, Math.round((now - t) / 1000));
  const days = Math.floor(s / 86400);
  s -= days * 86400;
  const two = (n) => String(n).padStart(2, "0");
  return `${days}d ${two(Math.floor(s / 3600))}:${two(Math.floor(s / 60) % 60)}:${two(s % 60)}`;
}

/**
 * vmActions are the commands a VM in its state takes, as the launcher
 * allows them: terminate from any state but DONE, poweroff while it
 * runs, resume from POWEROFF.
 */
export function vmActions(vm) {
  if (!vm || vm.state === "DONE") return [];
  const acts = ["terminate"];
  if (vm.state === "RUNNING" || vm.state === "BOOT") acts.push("poweroff");
  if (vm.state === "POWEROFF") acts.push("resume");
  return acts;
}

/**
 * consoleTail is the console text kept after a reply of the launcher's
 * console query ({text, size, next}) asked from offset arrives: {text,
 * offset}, the text so far (its newest CONSOLE_LIMIT characters) and the
 * offset to ask from next. A reply whose next is behind offset (a log
 * that began again) replaces the text.
 */
export function consoleTail(kept, offset, reply) {
  const next = Number.isSafeInteger(reply.next) ? reply.next : offset;
  const text = typeof reply.text === "string" ? reply.text : "";
  if (next < offset) return { text: text.slice(-CONSOLE_LIMIT), offset: next };
  return { text: (kept + text).slice(-CONSOLE_LIMIT), offset: next };
}
