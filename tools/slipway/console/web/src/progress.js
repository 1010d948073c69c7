// The progress of running imports: a pure reducer over the catalog's
// image-progress events, and how a phase's rate and time left are worked
// out and written. No DOM and no NATS, so node --test checks it
// (test/progress.test.js).
//
// The catalog republishes, under the image, the progress of whichever
// worker runs the current step of the image's saga (schemas/evt/
// catalog.image-progress.json): {id, step, phase, bytes_done, bytes_total}.
// Each step/phase gets its own bar; a new one ends the one before. The
// rate is the phase's average since it started, as the CLI's --wait bar
// measures it: progress comes in bursts, so the rate between two reports
// swings wildly.

import { humanSize } from "./store.js";

/** Phases kept per image (the newest), so a long saga cannot grow the page. */
export const PHASE_LIMIT = 8;

// A step or phase is a lower-case word (defs.json: SagaStep, JobPhase).
const WORD = /^[a-z][a-z0-9-]{0,31}$/;

/** The empty progress: no image has reported any. */
export function emptyProgress() {
  return {};
}

/**
 * readProgress turns a catalog image-progress event into a "progress"
 * action at time at (ms), or null when it does not have the event's
 * shape: the checks the CLI makes with the schema, so that nothing a
 * publisher makes up is drawn as a number it is not.
 */
export function readProgress(ev, at) {
  const d = ev && ev.data;
  if (!ev || ev.service !== "catalog" || ev.name !== "image-progress" || !d || typeof d !== "object") return null;
  const count = (n) => Number.isSafeInteger(n) && n >= 0;
  if (!count(d.id) || String(d.id) !== ev.id || !WORD.test(d.step) || !WORD.test(d.phase)) return null;
  if (!count(d.bytes_done) || !count(d.bytes_total)) return null;
  return { type: "progress", id: d.id, step: d.step, phase: d.phase, done: d.bytes_done, total: d.bytes_total, at };
}

/**
 * reduceProgress returns the progress after action (the state given is
 * not changed). Actions:
 *   {type: "progress", id, step, phase, done, total, at}  a report at time at (ms)
 *   {type: "finished", id}   the image is READY, in ERROR or gone: its bars go
 */
export function reduceProgress(state, action) {
  switch (action.type) {
    case "progress": {
      const label = action.step ? `${action.step}/${action.phase}` : action.phase;
      const phases = (state[action.id] || []).slice();
      const last = phases[phases.length - 1];
      if (last && last.label === label) {
        phases[phases.length - 1] = { ...last, done: action.done, total: action.total, at: action.at };
      } else {
        if (last) phases[phases.length - 1] = { ...last, finished: true };
        phases.push({ label, done: action.done, total: action.total, start: action.at, startDone: action.done, at: action.at, finished: false });
      }
      return { ...state, [action.id]: phases.slice(-PHASE_LIMIT) };
    }
    case "finished": {
      if (!(action.id in state)) return state;
      const next = { ...state };
      delete next[action.id];
      return next;
    }
    default:
      throw new Error(`progress: unknown action ${action.type}`);
  }
}

/** phasesOf are image id's phases, oldest first ([] when none). */
export function phasesOf(state, id) {
  return state[id] || [];
}

/** percent is the share done in whole percent, or -1 when the total is unknown. */
export function percent(p) {
  if (!(p.total > 0)) return -1;
  return Math.min(100, Math.floor((p.done * 100) / p.total));
}

/**
 * rate is the phase's bytes per second since it started, 0 until half a
 * second has passed and bytes have moved (as the CLI measures it).
 */
export function rate(p) {
  const dt = (p.at - p.start) / 1000;
  if (dt < 0.5 || !(p.done > p.startDone)) return 0;
  return (p.done - p.startDone) / dt;
}

/** eta is the seconds the phase still needs at its rate, or null when unknown. */
export function eta(p) {
  const r = rate(p);
  if (!(p.total > 0) || r <= 0 || p.finished) return null;
  return Math.max(0, (p.total - p.done) / r);
}

/** formatRate writes bytes per second as the CLI does: "120.5 MB/s". */
export function formatRate(bytesPerSecond) {
  return `${(bytesPerSecond / 1e6).toFixed(1)} MB/s`;
}

/** formatEta writes seconds left: "45s", "3m 05s", "1h 02m". */
export function formatEta(seconds) {
  const s = Math.ceil(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/**
 * phaseText is a phase as one line, the CLI's plain progress line plus
 * the time left: "convert/fetch 45% (1.2G of 2.6G) 120.5 MB/s, 10s left";
 * a finished phase says "done".
 */
export function phaseText(p) {
  let s = p.label;
  const pct = p.finished ? 100 : percent(p);
  if (p.finished) s += ` done (${humanSize(p.done)})`;
  else if (pct >= 0) s += ` ${pct}% (${humanSize(p.done)} of ${humanSize(p.total)})`;
  else s += ` ${humanSize(p.done)}`;
  const r = rate(p);
  if (r > 0 && !p.finished) s += ` ${formatRate(r)}`;
  const left = eta(p);
  if (left !== null) s += `, ${formatEta(left)} left`;
  return s;
}
