// Score bars on one scale per answer: longer is more similar, whatever the metric's direction.
import { el, formatScore } from "./dom.js";

/** The scale of a set of scores and the threshold: [lo, hi] with a margin. */
export function scale(scores, threshold) {
  const values = scores.concat(threshold === null || threshold === undefined ? [] : [threshold]);
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  const pad = (hi - lo) * 0.1 || Math.abs(hi) * 0.1 || 1;
  lo -= pad;
  hi += pad;
  return { lo, hi };
}

function fraction(value, range, higherIsBetter) {
  const f = (value - range.lo) / (range.hi - range.lo);
  return Math.min(1, Math.max(0, higherIsBetter ? f : 1 - f));
}

/** A bar for one score, with the threshold line on the same scale. */
export function scoreBar(score, threshold, range, higherIsBetter) {
  const bar = el("div", "bar");
  const fill = el("div", "fill");
  fill.style.width = `${(100 * fraction(score, range, higherIsBetter)).toFixed(1)}%`;
  bar.append(fill);
  if (threshold !== null && threshold !== undefined) {
    const line = el("div", "threshold");
    line.style.left = `${(100 * fraction(threshold, range, higherIsBetter)).toFixed(1)}%`;
    line.title = `threshold ${formatScore(threshold)}`;
    bar.append(line);
  }
  bar.append(el("span", "value", formatScore(score)));
  return bar;
}
