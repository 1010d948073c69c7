// The console's state store for images: a pure reducer, with no DOM and
// no NATS, so that node --test checks it (test/store.test.js).
//
// The list query fills it ("loaded"); the catalog's events keep it live
// ("upsert" for image-created and image-updated, whose payload is the
// whole record; "state" for state-changed; "deleted"). Events that arrive
// while the list query is under way are queued and replayed after it, and
// a record never replaces a newer one (updated_at), so the order in which
// the reply and the events arrive does not matter. Which images appear at
// all is the catalog's decision: the store adds an image only from the
// list or from a record the caller fetched with the show query (every
// user may watch every event; the queries filter by the use right).

/** Events of one image the detail view shows, newest last. */
export const HISTORY_LIMIT = 50;

/** The empty store: nothing listed yet, events queued until the list. */
export function emptyState() {
  return { loaded: false, images: {}, history: {}, queued: [] };
}

// newer tells whether record a is at least as recent as b.
function newer(a, b) {
  if (!b) return true;
  if (!a.updated_at || !b.updated_at) return true;
  return Date.parse(a.updated_at) >= Date.parse(b.updated_at);
}

function withImage(state, img) {
  return { ...state, images: { ...state.images, [img.id]: img } };
}

function without(state, id) {
  const images = { ...state.images };
  delete images[id];
  const history = { ...state.history };
  delete history[id];
  return { ...state, images, history };
}

// remember appends one line to image id's history, keeping the newest
// HISTORY_LIMIT.
function remember(state, id, entry) {
  if (!entry) return state;
  const past = state.history[id] || [];
  const next = past.concat([entry]).slice(-HISTORY_LIMIT);
  return { ...state, history: { ...state.history, [id]: next } };
}

/**
 * reduce returns the state after action (the state given is not changed).
 * Actions:
 *   {type: "loading"}                  a new list query starts (after a reconnect)
 *   {type: "loaded", images}           the list query's reply
 *   {type: "upsert", image, checked?, entry?}  a whole record: from an event
 *                                      (updates a listed image only) or, checked,
 *                                      from the show query (may add one)
 *   {type: "state", id, to, error?, entry?}  state-changed
 *   {type: "deleted", id}              image-deleted
 *   {type: "forget", id}               the catalog no longer shows it to us
 * entry, when given, is {time, event, text} for the image's history.
 */
export function reduce(state, action) {
  const listing = listed(state, action, reduce, () => ({ images: byID(action.images) }));
  if (listing) return listing;
  switch (action.type) {
    case "upsert": {
      const img = action.image;
      // An event alone never adds an image: only the list or a show
      // reply (checked) says this user may see it.
      if (!action.checked && !knows(state, img.id)) return state;
      if (!newer(img, state.images[img.id])) return state;
      return remember(withImage(state, img), img.id, action.entry);
    }
    case "state": {
      const cur = state.images[action.id];
      if (!cur) return state;
      const img = { ...cur, state: action.to };
      if (action.error) img.error = action.error;
      return remember(withImage(state, img), action.id, action.entry);
    }
    case "deleted":
    case "forget":
      return without(state, action.id);
    default:
      throw new Error(`store: unknown action ${action.type}`);
  }
}

/**
 * listed is what every list store's reducer (images here, vmstore.js's
 * VMs) does alike: an action before the list's reply is queued; "loading"
 * starts a new list; "loaded" takes the records fill() gives and replays
 * the queue through reduce. Any other action gives null: the store's own.
 */
export function listed(state, action, reduce, fill) {
  if (!state.loaded && action.type !== "loaded" && action.type !== "loading") {
    return { ...state, queued: state.queued.concat([action]) };
  }
  if (action.type === "loading") return { ...state, loaded: false, queued: [] };
  if (action.type !== "loaded") return null;
  let next = { ...state, ...fill(), loaded: true, queued: [] };
  for (const queued of state.queued) next = reduce(next, queued);
  return next;
}

/** byID maps records by their id. */
export function byID(records) {
  return Object.fromEntries(records.map((r) => [r.id, r]));
}

/** knows tells whether the store lists image id. */
export function knows(state, id) {
  return Object.prototype.hasOwnProperty.call(state.images, id);
}

/** images are the listed records in ID order. */
export function images(state) {
  return Object.values(state.images).sort((a, b) => a.id - b.id);
}

/** COLUMNS are oneimage list's, in its order. */
export const COLUMNS = ["ID", "USER", "GROUP", "NAME", "DATASTORE", "SIZE", "TYPE", "PER", "STAT", "RVMS"];

/**
 * row renders one image as oneimage list's columns. names holds the short
 * forms the server gives in /config.json (the CLI's own tables):
 * {states: {READY: "rdy", …}, types: {OS: "OS", …}}.
 */
export function row(img, names) {
  const state = (names.states && names.states[img.state]) || String(img.state || "").toLowerCase();
  const type = (names.types && names.types[img.type]) || img.type || "";
  return [
    String(img.id),
    img.user || "",
    img.group || "",
    img.name,
    img.datastore || "",
    humanSize(img.size || 0),
    type,
    img.persistent ? "Yes" : "No",
    state,
    String(img.rvms || 0),
  ];
}

const SIZE_UNITS = ["K", "M", "G", "T", "P"];

/**
 * humanSize renders bytes as OpenNebula's CLI does (the CLI's
 * render.HumanSize): divide by 1024 while above 1024, one decimal, ".0"
 * dropped; 0 is "0M".
 */
export function humanSize(bytes) {
  if (!(bytes > 0)) return "0M";
  let v = bytes / 1024;
  let i = 0;
  while (v > 1024 && i < SIZE_UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  const r = Math.floor(v * 10 + 0.5) / 10;
  return (Number.isInteger(r) ? String(r) : r.toFixed(1)) + SIZE_UNITS[i];
}

/**
 * permissionRows renders octal bits ("640") as oneimage show's
 * PERMISSIONS block: [["OWNER", "um-"], ["GROUP", "u--"], ["OTHER", "---"]].
 */
export function permissionRows(octal) {
  if (!/^[0-7]{3}$/.test(octal || "")) return [];
  return ["OWNER", "GROUP", "OTHER"].map((who, i) => {
    const d = Number(octal[i]);
    return [who, (d & 4 ? "u" : "-") + (d & 2 ? "m" : "-") + (d & 1 ? "a" : "-")];
  });
}
