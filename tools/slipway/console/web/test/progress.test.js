// Unit tests of the import progress (src/progress.js): node --test.
import { test } from "node:test";
import assert from "node:assert/strict";
import { emptyProgress, eta, formatEta, formatRate, percent, phasesOf, phaseText, rate, readProgress, reduceProgress, PHASE_LIMIT } from "../src/progress.js";

const ev = (data, id = String(data.id)) => ({ service: "catalog", name: "image-progress", id, data });
const report = (id, step, phase, done, total, at) => ({ type: "progress", id, step, phase, done, total, at });

test("an image-progress event becomes a progress action; anything else of another shape does not", () => {
  const good = { id: 7, step: "convert", phase: "fetch", bytes_done: 10, bytes_total: 100 };
  assert.deepEqual(readProgress(ev(good), 5), report(7, "convert", "fetch", 10, 100, 5));
  for (const bad of [
    { ...good, id: 8 }, // not the subject's image
    { ...good, bytes_done: -1 },
    { ...good, bytes_total: "100" },
    { ...good, bytes_done: 1.5 },
    { ...good, phase: "Fetch" },
    { ...good, step: "<b>x</b>" },
    { ...good, phase: "a".repeat(33) },
  ]) {
    assert.equal(readProgress(ev(bad, "7"), 5), null, JSON.stringify(bad));
  }
  assert.equal(readProgress({ ...ev(good), name: "state-changed" }, 5), null);
  assert.equal(readProgress({ ...ev(good), service: "builder" }, 5), null);
  assert.equal(readProgress({ ...ev(good), data: null }, 5), null);
});

test("each step/phase gets its own bar; a new one finishes the one before", () => {
  let s = emptyProgress();
  s = reduceProgress(s, report(1, "build", "pull", 0, 0, 0));
  s = reduceProgress(s, report(1, "build", "pull", 300, 0, 1000));
  s = reduceProgress(s, report(1, "convert", "convert", 10, 100, 2000));
  const [pull, conv] = phasesOf(s, 1);
  assert.equal(pull.label, "build/pull");
  assert.equal(pull.finished, true);
  assert.equal(pull.done, 300);
  assert.equal(conv.label, "convert/convert");
  assert.equal(conv.finished, false);
  assert.equal(conv.start, 2000, "a new phase starts its own measure");
  assert.deepEqual(phasesOf(s, 2), []);
});

test("at most PHASE_LIMIT phases are kept; finished drops an image's bars", () => {
  let s = emptyProgress();
  for (let i = 0; i < PHASE_LIMIT + 3; i++) s = reduceProgress(s, report(1, "", `p${i}`, 0, 0, i));
  assert.equal(phasesOf(s, 1).length, PHASE_LIMIT);
  assert.equal(phasesOf(s, 1).at(-1).label, `p${PHASE_LIMIT + 2}`);
  s = reduceProgress(s, { type: "finished", id: 1 });
  assert.deepEqual(phasesOf(s, 1), []);
  assert.equal(reduceProgress(s, { type: "finished", id: 9 }), s, "finishing an unknown image changes nothing");
});

test("the rate is the phase's average; the time left follows from it", () => {
  let s = emptyProgress();
  s = reduceProgress(s, report(1, "convert", "fetch", 0, 100e6, 0));
  let p = phasesOf(s, 1)[0];
  assert.equal(rate(p), 0, "no rate before any time has passed");
  assert.equal(eta(p), null);
  s = reduceProgress(s, report(1, "convert", "fetch", 20e6, 100e6, 2000));
  p = phasesOf(s, 1)[0];
  assert.equal(rate(p), 10e6);
  assert.equal(eta(p), 8);
  assert.equal(percent(p), 20);
  assert.equal(phaseText(p), "convert/fetch 20% (19.1M of 95.4M) 10.0 MB/s, 8s left");
  // A burst does not make the rate jump: it stays the average.
  s = reduceProgress(s, report(1, "convert", "fetch", 60e6, 100e6, 4000));
  assert.equal(rate(phasesOf(s, 1)[0]), 15e6);
});

test("an unknown total shows the bytes and no time left", () => {
  let s = reduceProgress(emptyProgress(), report(3, "build", "pull", 0, 0, 0));
  s = reduceProgress(s, report(3, "build", "pull", 3 << 20, 0, 1000));
  const p = phasesOf(s, 3)[0];
  assert.equal(percent(p), -1);
  assert.equal(eta(p), null);
  assert.equal(phaseText(p), "build/pull 3M 3.1 MB/s");
});

test("time left and rate are written for people", () => {
  assert.equal(formatEta(0.2), "1s");
  assert.equal(formatEta(45), "45s");
  assert.equal(formatEta(185), "3m 05s");
  assert.equal(formatEta(3720), "1h 02m");
  assert.equal(formatRate(120.5e6), "120.5 MB/s");
});
