// Unit tests of the marketplace lists (src/marketstore.js): node --test.
import { test } from "node:test";
import assert from "node:assert/strict";
import { appRow, appVersion, marketRow, mergeMarkets } from "../src/marketstore.js";

test("the services' lists merge by ID, each marketplace marked with its service", () => {
  const merged = mergeMarkets([["market-lxc", [{ id: 1, name: "lxc" }]], ["market-dockerhub", [{ id: 100, name: "local" }, { id: 3, name: "DockerHub" }]], ["market-x", null]]);
  assert.deepEqual(merged.map((m) => [m.id, m.service]), [[1, "market-lxc"], [3, "market-dockerhub"], [100, "market-dockerhub"]]);
});

test("rows are market list's and market app list's columns", () => {
  assert.deepEqual(marketRow({ id: 100, name: "local", mad: "registry", apps: 2, zone: 0 }), ["100", "local", "0M", "-", "2", "registry", "0"]);
  assert.deepEqual(marketRow({ id: 5, name: "s3", mad: "s3", total_mb: 2048, free_mb: 512, apps: 0 }), ["5", "s3", "2G", "512M", "0", "s3", "0"]);
  assert.deepEqual(appRow({ id: 7, name: "team/app", tags: ["v1", "latest"], size: 0, regtime: "2026-03-04T05:06:07Z" }, "local"),
    ["7", "team/app", "latest", "-", "rdy", "img", "2026-03-04", "local"]);
  assert.equal(appRow({ id: 1, name: "t", type: "VMTEMPLATE", size: 3 << 20 }, "m")[5], "tpl");
  assert.equal(appVersion({ version: "2.0", tags: ["latest"] }), "2.0");
  assert.equal(appVersion({ tags: ["v1", "v2"] }), "v1");
  assert.equal(appVersion({}), "latest");
});
