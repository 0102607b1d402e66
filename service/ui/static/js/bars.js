// Score bars on one scale per answer: longer is more similar, whatever the metric's direction.
import { el, formatScore } from "./dom.js";

/** Where a metric's scores can lie (unbounded ones are scaled to the answer's own scores). */
const BOUNDS = { softmax: [0, 1], cosine: [-1, 1], correlation: [-1, 1], euclidean: [0, Infinity] };

/** The scale of a set of scores and the threshold: [lo, hi] with a margin, inside the metric's bounds. */
export function scale(scores, threshold, metric) {
  const values = scores.concat(threshold === null || threshold === undefined ? [] : [threshold]);
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  const pad = (hi - lo) * 0.1 || Math.abs(hi) * 0.1 || 1;
  const [floor, ceiling] = BOUNDS[metric] || [-Infinity, Infinity];
  lo = Math.max(floor, lo - pad);
  hi = Math.min(ceiling, hi + pad);
  return { lo, hi };
}

function fraction(value, range, higherIsBetter) {
  const f = (value - range.lo) / (range.hi - range.lo);
  return Math.min(1, Math.max(0, higherIsBetter ? f : 1 - f));
}

/** A legend for the bars of one answer. */
export function legend(range, threshold, higherIsBetter) {
  const ends = higherIsBetter ? [range.lo, range.hi] : [range.hi, range.lo];
  const line = threshold === null || threshold === undefined ? "no threshold"
    : `red line: threshold ${formatScore(threshold)}`;
  return el("p", "note legend", `bars: score from ${formatScore(ends[0])} (left) to ${formatScore(ends[1])} (right); ${line}`);
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
  const cell = el("div", "score-cell");
  cell.append(bar, el("span", "value", formatScore(score)));
  return cell;
}
