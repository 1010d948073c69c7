// Marketplaces and their apps as the console lists them: the columns of
// `slipway market list` and `slipway market app list` (onemarket's and
// onemarketapp's), and how the lists of the two marketplace services
// (market-lxc, market-dockerhub) merge. Pure functions: node --test checks
// them (test/marketstore.test.js).

import { humanSize } from "./store.js";

/** MARKET_SERVICES answer the list and apps queries, in the CLI's order. */
export const MARKET_SERVICES = ["market-lxc", "market-dockerhub"];

/**
 * mergeMarkets joins the services' list replies ([[service, markets]…])
 * in ID order, each marketplace marked with the service that owns it:
 * the one whose list holds it, where its commands go.
 */
export function mergeMarkets(replies) {
  const out = [];
  for (const [service, markets] of replies) for (const m of markets || []) out.push({ ...m, service });
  return out.sort((a, b) => a.id - b.id);
}

export const MARKET_COLUMNS = ["ID", "NAME", "SIZE", "AVAIL", "APPS", "MAD", "ZONE"];

/** marketRow is one marketplace as `slipway market list` prints it. */
export function marketRow(m) {
  const avail = m.total_mb > 0 ? humanSize((m.free_mb || 0) * 1048576) : "-";
  return [String(m.id), m.name, humanSize((m.total_mb || 0) * 1048576), avail, String(m.apps || 0), m.mad || "", String(m.zone || 0)];
}

export const APP_COLUMNS = ["ID", "NAME", "VERSION", "SIZE", "STAT", "TYPE", "REGTIME", "MARKET"];

/** appVersion is an app's VERSION: the listed one, else its default tag (latest, else the first). */
export function appVersion(a) {
  if (a.version) return a.version;
  const tags = a.tags || [];
  return tags.includes("latest") || tags.length === 0 ? "latest" : tags[0];
}

/**
 * appRow is one app as `slipway market app list` prints it (REGTIME as
 * the date, in UTC); marketName names its marketplace.
 */
export function appRow(a, marketName) {
  const stat = !a.state || a.state === "READY" ? "rdy" : String(a.state).toLowerCase();
  const type = a.type === "VMTEMPLATE" ? "tpl" : a.type === "SERVICE_TEMPLATE" ? "srv" : "img";
  const reg = Date.parse(a.regtime || "");
  return [String(a.id), a.name, appVersion(a), a.size > 0 ? humanSize(a.size) : "-", stat, type,
    Number.isNaN(reg) ? a.regtime || "" : new Date(reg).toISOString().slice(0, 10), marketName];
}
