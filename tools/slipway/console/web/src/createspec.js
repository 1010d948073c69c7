// What the create forms send: the catalog's image-create command and a
// marketplace's app-import, built from a form's values with the CLI's
// options and checked as the CLI checks them (tools/slipway/cli:
// create_spec.go's checkCreate, market app import), so that a mistake is
// named before anything is sent. The services validate again. Pure
// functions: node --test checks them (test/createspec.test.js).

export const IMAGE_TYPES = ["OS", "CDROM", "DATABLOCK", "KERNEL", "RAMDISK", "CONTEXT"];
export const DISK_FORMATS = ["raw", "qcow2", "vmdk", "vdi", "vpc", "vhdx"];
export const FILESYSTEMS = ["ext2", "ext3", "ext4", "xfs"];
export const COMPRESSIONS = ["zstd", "zlib"];
// A docker:// import and an app import build raw or qcow2 disks.
export const BUILT_FORMATS = ["raw", "qcow2"];
const FILE_TYPES = ["KERNEL", "RAMDISK", "CONTEXT"];

// A container image reference: [registry[:port]/]path[:tag][@sha256:hex],
// without a scheme, query, fragment, space or anything else a URL would
// read as syntax. The builder parses it again (pkg/dockerurl).
const REFERENCE = /^[A-Za-z0-9][A-Za-z0-9._-]*(:[0-9]{1,5})?(\/[a-z0-9]+([._-]+[a-z0-9]+)*)+(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@sha256:[0-9a-f]{64})?$|^[a-z0-9]+([._-]+[a-z0-9]+)*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@sha256:[0-9a-f]{64})?$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const CHECKSUM = /^(md5:[0-9a-f]{32}|sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/;

// sizeMiB reads a size field: "" is none (0); else a whole number of MiB, at least 1.
function sizeMiB(v, what, errs) {
  const s = String(v ?? "").trim();
  if (s === "") return 0;
  if (!/^[0-9]+$/.test(s) || Number(s) < 1 || !Number.isSafeInteger(Number(s))) {
    errs.push(`${what} "${s}": want a whole number of MiB, at least 1`);
    return 0;
  }
  return Number(s);
}

function oneOf(v, values, what, errs) {
  if (v && !values.includes(v)) errs.push(`${what} "${v}": want one of ${values.join("|")}`);
  return v;
}

// fail throws errs as one Error, one line each, when there are any.
function fail(errs) {
  if (errs.length) throw new Error(errs.join("; "));
}

/**
 * dockerURL is the docker:// source of a container image: ref (as
 * `docker pull` takes it) and the VM-disk options tag, size (MiB),
 * filesystem and format, put in the query by the URL encoder, never
 * pasted. A ref that is not a plain reference (a scheme, a query, a
 * space…) is refused, naming it.
 */
export function dockerURL({ ref, tag, size, filesystem, format }) {
  const errs = [];
  const r = String(ref || "").trim().replace(/^docker:\/\//, "");
  if (!r) errs.push("give the container image, e.g. registry.example:5000/team/app:1.0 or nginx");
  else if (!REFERENCE.test(r)) errs.push(`image "${r}": not a container image reference ([registry[:port]/]repository[:tag][@sha256:…])`);
  const q = new URLSearchParams();
  const t = String(tag || "").trim();
  if (t) {
    if (!TAG.test(t)) errs.push(`tag "${t}": letters, digits, . _ - (at most 128)`);
    q.set("tag", t);
  }
  const mib = sizeMiB(size, "size", errs);
  if (mib) q.set("size", String(mib));
  if (oneOf(filesystem, FILESYSTEMS, "filesystem", errs)) q.set("filesystem", filesystem);
  if (oneOf(format, BUILT_FORMATS, "format", errs)) q.set("format", format);
  fail(errs);
  const query = q.toString();
  return `docker://${r}${query ? `?${query}` : ""}`;
}

/**
 * imageCreate is the catalog's image-create command (schemas/cmd/
 * catalog.image-create.json) from form values: name, datastore,
 * description, type, persistent, path (an http(s):// or s3:// URL, or a
 * docker:// one from dockerURL), or size (MiB) alone for an empty
 * DATABLOCK; format, sourceFormat, fs, compression, rootfs, checksums
 * (text, one a line or separated by spaces). Empty values are left out;
 * the catalog's defaults then apply, as with the CLI.
 */
export function imageCreate(f) {
  const errs = [];
  const c = {};
  c.name = String(f.name || "").trim();
  if (!c.name) errs.push("a name is required");
  const type = String(f.type || "").toUpperCase();
  if (oneOf(type, IMAGE_TYPES, "type", errs)) c.type = type;
  // File types live in the files datastore, unless one is named.
  c.datastore = String(f.datastore || "").trim() || (FILE_TYPES.includes(type) ? "files" : "default");
  if (f.description) c.description = String(f.description);
  if (f.persistent) c.persistent = true;
  const path = String(f.path || "").trim();
  const mib = sizeMiB(f.size, "size", errs);
  if (path) {
    const scheme = (/^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(path) || [])[1];
    if (!scheme) errs.push(`path "${path}": give an http(s)://, s3:// or docker:// URL (files from this computer: the upload form)`);
    else if (!["http", "https", "s3", "docker"].includes(scheme.toLowerCase())) errs.push(`path "${path}": scheme "${scheme}" is not supported: use http(s)://, s3:// or docker://`);
    else if (/^https?$/i.test(scheme)) {
      try {
        if (!new URL(path).host) throw new Error();
      } catch {
        errs.push(`path "${path}": not a valid URL`);
      }
    }
    c.path = path;
  }
  if (!path && !mib) errs.push("give a URL to import or a size (MiB, for an empty DATABLOCK)");
  if (path && mib && !f.rootfs) errs.push("give a URL (to import data) or a size (an empty DATABLOCK), not both");
  if (f.rootfs && !path) errs.push("a root filesystem needs the URL of its tarball");
  if (mib) c.size_mib = mib;
  if (f.rootfs) c.rootfs = true;
  if (oneOf(f.format, DISK_FORMATS, "format", errs)) c.format = f.format;
  if (oneOf(f.sourceFormat, DISK_FORMATS, "source format", errs)) c.source_format = f.sourceFormat;
  if (oneOf(f.fs, FILESYSTEMS, "filesystem", errs)) c.fs = f.fs;
  if (oneOf(f.compression, COMPRESSIONS, "compression", errs)) c.compression = f.compression;
  const sums = String(f.checksums || "").split(/[\s,]+/).filter(Boolean).map((s) => s.toLowerCase());
  for (const s of sums) if (!CHECKSUM.test(s)) errs.push(`checksum "${s}": want md5:, sha256: or sha512: and the hex digest`);
  if (new Set(sums.map((s) => s.split(":")[0])).size !== sums.length) errs.push("one checksum per algorithm (md5, sha256, sha512)");
  if (sums.length) c.checksums = sums;
  fail(errs);
  return c;
}

/**
 * appImport is a marketplace's app-import command (defs.json
 * MarketAppImport) for app of market, from form values: name, tag, size
 * (MiB), filesystem, format, datastore. Without a format, and when the
 * marketplace names none, qcow2, as `slipway market app import` sends.
 */
export function appImport(market, app, f) {
  const errs = [];
  const req = { market_id: market.id, app: app.name, name: String(f.name || "").trim() };
  if (!req.name) errs.push("a name is required: the image's and the VM template's");
  const tag = String(f.tag || "").trim();
  if (tag) {
    if (!TAG.test(tag)) errs.push(`tag "${tag}": letters, digits, . _ - (at most 128)`);
    req.tag = tag;
  }
  const mib = sizeMiB(f.size, "size", errs);
  if (mib) req.size_mib = mib;
  if (oneOf(f.filesystem, FILESYSTEMS, "filesystem", errs)) req.filesystem = f.filesystem;
  if (oneOf(f.format, BUILT_FORMATS, "format", errs)) req.format = f.format;
  else if (!market.format) req.format = "qcow2";
  req.datastore = String(f.datastore || "").trim() || "default";
  fail(errs);
  return req;
}
