// Unit tests of the VM store (src/vmstore.js): node --test.
import { test } from "node:test";
import assert from "node:assert/strict";
import { age, consoleTail, emptyVMs, hasVM, reduceVMs, vmActions, vmList, vmRow, CONSOLE_LIMIT } from "../src/vmstore.js";

const vm = (id, over = {}) => ({ id, name: `vm${id}`, user: "alice", state: "PENDING", template_id: 0, vcpu: 1, memory_mib: 256, created_at: "2026-01-01T00:00:00Z", ...over });
const loaded = (...list) => reduceVMs(emptyVMs(), { type: "loaded", vms: list });

test("the list fills the store; events before it are queued and replayed", () => {
  let s = emptyVMs();
  s = reduceVMs(s, { type: "state", id: 1, to: "RUNNING" });
  s = reduceVMs(s, { type: "upsert", vm: vm(2) });
  assert.equal(vmList(s, true).length, 0, "nothing before the list");
  s = reduceVMs(s, { type: "loaded", vms: [vm(1)] });
  assert.equal(s.vms[1].state, "RUNNING");
  assert.ok(!hasVM(s, 2), "an unchecked record of an unlisted VM is not added");
  assert.equal(s.queued.length, 0);
});

test("an event alone never adds a VM; the vm query's record does", () => {
  let s = loaded(vm(1));
  s = reduceVMs(s, { type: "state", id: 5, to: "RUNNING" });
  s = reduceVMs(s, { type: "upsert", vm: vm(6) });
  assert.deepEqual(vmList(s, true).map((v) => v.id), [1]);
  s = reduceVMs(s, { type: "upsert", vm: vm(6), checked: true });
  assert.deepEqual(vmList(s, true).map((v) => v.id), [1, 6]);
});

test("a state change keeps the reason; DONE VMs are listed only with all", () => {
  let s = loaded(vm(2), vm(1));
  s = reduceVMs(s, { type: "state", id: 2, to: "FAILED", reason: "image 9 does not exist" });
  assert.equal(s.vms[2].reason, "image 9 does not exist");
  s = reduceVMs(s, { type: "state", id: 1, to: "DONE" });
  assert.deepEqual(vmList(s, false).map((v) => v.id), [2]);
  assert.deepEqual(vmList(s, true).map((v) => v.id), [1, 2]);
});

test("rows are vm list's columns", () => {
  const now = Date.parse("2026-01-02T01:02:03Z");
  assert.deepEqual(vmRow(vm(3, { state: "RUNNING", memory_mib: 1536, template_id: 4 }), { RUNNING: "runn" }, now),
    ["3", "alice", "vm3", "runn", "1", "1.5G", "4", "1d 01:02:03"]);
  assert.equal(vmRow(vm(3, { state: "ODD" }), {}, now)[3], "odd");
  assert.equal(age("not a time", now), "-");
});

test("the actions follow the launcher's rules", () => {
  assert.deepEqual(vmActions(vm(1, { state: "RUNNING" })), ["terminate", "poweroff"]);
  assert.deepEqual(vmActions(vm(1, { state: "POWEROFF" })), ["terminate", "resume"]);
  assert.deepEqual(vmActions(vm(1, { state: "FAILED" })), ["terminate"]);
  assert.deepEqual(vmActions(vm(1, { state: "DONE" })), []);
  assert.deepEqual(vmActions(undefined), []);
});

test("the console tail appends from the offset asked and keeps the newest text", () => {
  let t = consoleTail("", 0, { text: "boot\n", size: 5, next: 5 });
  assert.deepEqual(t, { text: "boot\n", offset: 5 });
  t = consoleTail(t.text, t.offset, { text: "TOKEN\n", size: 11, next: 11 });
  assert.deepEqual(t, { text: "boot\nTOKEN\n", offset: 11 });
  t = consoleTail(t.text, t.offset, { text: "", size: 11, next: 11 });
  assert.equal(t.text, "boot\nTOKEN\n", "nothing new changes nothing");
  const big = consoleTail("x".repeat(CONSOLE_LIMIT), 100, { text: "END", size: 103, next: 103 });
  assert.equal(big.text.length, CONSOLE_LIMIT);
  assert.ok(big.text.endsWith("END"));
  const again = consoleTail("old", 50, { text: "new", size: 3, next: 3 });
  assert.deepEqual(again, { text: "new", offset: 3 }, "a log that began again replaces the text");
});
