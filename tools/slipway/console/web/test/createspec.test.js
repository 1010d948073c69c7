// Unit tests of the create forms' commands (src/createspec.js): node --test.
import { test } from "node:test";
import assert from "node:assert/strict";
import { appImport, dockerURL, imageCreate } from "../src/createspec.js";

test("a docker:// URL carries the options in its query, encoded", () => {
  assert.equal(dockerURL({ ref: "127.0.0.1:5000/test/bootme", tag: "1.0", size: "64", filesystem: "ext4", format: "qcow2" }),
    "docker://127.0.0.1:5000/test/bootme?tag=1.0&size=64&filesystem=ext4&format=qcow2");
  assert.equal(dockerURL({ ref: "nginx" }), "docker://nginx");
  assert.equal(dockerURL({ ref: "docker://busybox:1.36" }), "docker://busybox:1.36", "the scheme may be given");
  assert.equal(dockerURL({ ref: `nginx@sha256:${"a".repeat(64)}` }), `docker://nginx@sha256:${"a".repeat(64)}`);
});

test("a reference or an option that would be URL syntax is refused, naming it", () => {
  for (const ref of ["nginx?size=99999", "nginx#x", "host/app name", "http://host/app", "../etc", "nginx&format=raw", "", "host:port/app"]) {
    assert.throws(() => dockerURL({ ref }), /image|give the container image/, ref);
  }
  assert.throws(() => dockerURL({ ref: "nginx", tag: "1.0&size=1" }), /tag "1.0&size=1"/);
  assert.throws(() => dockerURL({ ref: "nginx", size: "64&format=raw" }), /size "64&format=raw"/);
  assert.throws(() => dockerURL({ ref: "nginx", format: "vmdk" }), /format "vmdk": want one of raw\|qcow2/);
  assert.throws(() => dockerURL({ ref: "nginx", filesystem: "ntfs" }), /filesystem "ntfs"/);
});

test("image-create takes the CLI's options and leaves out the empty ones", () => {
  assert.deepEqual(imageCreate({ name: " web ", path: "https://host/x.qcow2", format: "qcow2", persistent: true, checksums: "SHA256:" + "A".repeat(64) }),
    { name: "web", datastore: "default", persistent: true, path: "https://host/x.qcow2", format: "qcow2", checksums: ["sha256:" + "a".repeat(64)] });
  assert.deepEqual(imageCreate({ name: "scratch", type: "datablock", size: "1024", fs: "ext4" }),
    { name: "scratch", type: "DATABLOCK", datastore: "default", size_mib: 1024, fs: "ext4" });
  assert.equal(imageCreate({ name: "k", type: "KERNEL", path: "s3://b/k" }).datastore, "files", "file types go to the files datastore");
  assert.deepEqual(imageCreate({ name: "deb", path: "https://h/rootfs.tar.xz", rootfs: true, size: "2048" }),
    { name: "deb", datastore: "default", path: "https://h/rootfs.tar.xz", size_mib: 2048, rootfs: true });
});

test("image-create refuses what the CLI refuses, every mistake at once", () => {
  const cases = [
    [{ path: "https://h/x" }, /a name is required/],
    [{ name: "x" }, /give a URL to import or a size/],
    [{ name: "x", path: "https://h/x", size: "8" }, /not both/],
    [{ name: "x", path: "/etc/passwd" }, /give an http\(s\):\/\/, s3:\/\/ or docker:\/\/ URL/],
    [{ name: "x", path: "ftp://h/x" }, /scheme "ftp" is not supported/],
    [{ name: "x", size: "0" }, /size "0"/],
    [{ name: "x", size: "-3" }, /size "-3"/],
    [{ name: "x", size: "8", type: "DISK" }, /type "DISK"/],
    [{ name: "x", size: "8", format: "iso" }, /format "iso"/],
    [{ name: "x", path: "https://h/x", checksums: "md5:xyz" }, /checksum "md5:xyz"/],
    [{ name: "x", path: "https://h/x", checksums: `sha256:${"a".repeat(64)} sha256:${"b".repeat(64)}` }, /one checksum per algorithm/],
  ];
  for (const [form, want] of cases) assert.throws(() => imageCreate(form), want, JSON.stringify(form));
  assert.throws(() => imageCreate({ size: "x", type: "Z" }), (err) => err.message.split("; ").length === 4);
});

test("app-import has the CLI's defaults and refusals", () => {
  const m = { id: 100, format: "" };
  const app = { name: "team/app" };
  assert.deepEqual(appImport(m, app, { name: "app" }), { market_id: 100, app: "team/app", name: "app", format: "qcow2", datastore: "default" });
  assert.deepEqual(appImport({ id: 3, format: "raw" }, app, { name: "a", tag: "v1", size: "128", filesystem: "xfs", datastore: "fast" }),
    { market_id: 3, app: "team/app", name: "a", tag: "v1", size_mib: 128, filesystem: "xfs", datastore: "fast" });
  assert.throws(() => appImport(m, app, { name: "" }), /a name is required/);
  assert.throws(() => appImport(m, app, { name: "a", format: "vmdk" }), /format "vmdk"/);
  assert.throws(() => appImport(m, app, { name: "a", tag: "v 1" }), /tag "v 1"/);
});
