// Verify: two images (or gallery ids) → score against the threshold.
import { apiJson } from "./api.js";
import { $, el, formatScore, guarded, verdictBadge } from "./dom.js";
import { MEANING, fillMetrics } from "./model.js";

function addSide(form, side) {
  const file = $(`verify-file-${side}`).files[0];
  const id = $(`verify-id-${side}`).value.trim();
  if (file) form.append(`image_${side}`, file, file.name);
  else if (id) form.append(`gallery_id_${side}`, id);
  else throw new Error(`side ${side.toUpperCase()}: choose an image or give a gallery id`);
}

async function runVerify(event) {
  event.preventDefault();
  await guarded(async () => {
    const form = new FormData();
    addSide(form, "a");
    addSide(form, "b");
    if ($("verify-metric").value) form.append("metric", $("verify-metric").value);
    const threshold = $("verify-threshold").value.trim();
    if (threshold) form.append("threshold", threshold);
    const answer = await apiJson("/verify", { method: "POST", form });
    const box = $("verify-result");
    let verdict = "No decision: this metric has no threshold";
    if (answer.same_person !== null) verdict = answer.same_person ? "Same person" : "Different people";
    const headline = el("p", "verdict", verdict);
    headline.append(" ", verdictBadge(answer.same_person));
    const relation = answer.threshold === null ? "" : answer.higher_is_better
      ? (answer.score >= answer.threshold ? " ≥ " : " < ") : (answer.score <= answer.threshold ? " ≤ " : " > ");
    const line = answer.threshold === null ? `score ${formatScore(answer.score)}`
      : `score ${formatScore(answer.score)}${relation}threshold ${formatScore(answer.threshold)}`;
    box.replaceChildren(
      headline,
      el("p", "score", line),
      el("p", "note", `${answer.metric}: ${MEANING[answer.metric] || ""}`),
      el("p", "note", `${answer.model}; ${answer.timings.total_ms.toFixed(0)} ms`),
    );
    box.hidden = false;
  });
}

function preview(side) {
  $(`verify-file-${side}`).addEventListener("change", (event) => {
    const file = event.target.files[0];
    const img = $(`verify-preview-${side}`);
    if (file) {
      img.src = URL.createObjectURL(file);
      $(`verify-id-${side}`).value = "";
    }
    img.hidden = !file;
  });
}

export function initVerify() {
  preview("a");
  preview("b");
  $("verify-form").addEventListener("submit", runVerify);
}

export function showVerify() {
  return guarded(() => fillMetrics($("verify-metric")));
}
