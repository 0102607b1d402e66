// Model: what is being served, its scoring modes and what their thresholds mean.
import { api, apiJson } from "./api.js";
import { $, el, formatScore, guarded } from "./dom.js";

export const HIGHER_IS_BETTER = {
  softmax: true, cosine: true, correlation: true, euclidean: false, pairwise: true,
};

export const MEANING = {
  softmax: "p(same person) from the verification head, 0…1; higher is more similar.",
  cosine: "cosine similarity of the two embeddings, −1…1; higher is more similar.",
  correlation: "Pearson correlation of the two embeddings (mean-centred cosine), −1…1; higher is more similar.",
  euclidean: "Euclidean distance between the two embeddings, ≥ 0; lower is more similar.",
  pairwise: "the pairwise comparator's same-vs-different score (unbounded); higher is more similar.",
};

let cached = null;  // Promise of {ready, models}

/** /ready (its 503 answer too: it carries the reason) and /models. */
export function modelFacts(refresh = false) {
  if (!cached || refresh) {
    cached = Promise.all([
      api("/ready", { accept: [503] }).then((r) => r.json()),
      apiJson("/models"),
    ]).then(([ready, models]) => ({ ready, models })).catch((err) => {
      cached = null;
      throw err;
    });
  }
  return cached;
}

/** Fill a metric <select> with the active model's metrics (the default first, chosen). */
export async function fillMetrics(select) {
  const { ready, models } = await modelFacts();
  const active = models.models.find((m) => m.active);
  const fallback = active && active.manifest ? active.manifest.default_metric : "";
  const chosen = select.value || fallback;
  select.replaceChildren(...ready.metrics.map((metric) => {
    const option = el("option", "", metric === fallback ? `${metric} (default)` : metric);
    option.value = metric;
    return option;
  }));
  select.value = ready.metrics.includes(chosen) ? chosen : (ready.metrics[0] || "");
}

function fact(list, name, value) {
  list.append(el("dt", "", name), el("dd", "", value === null || value === undefined ? "—" : value));
}

function scoringRows(manifest, metrics) {
  return metrics.map((metric) => {
    const mode = manifest.scoring[metric];
    const row = el("tr");
    row.dataset.metric = metric;
    const direction = HIGHER_IS_BETTER[metric] ? "higher = more similar" : "lower = more similar";
    if (!mode) {
      row.append(el("td", "", metric), el("td", "", direction), el("td", "", "—"), el("td", "", "—"),
        el("td", "warn", "not calibrated: no default threshold, decisions are null"));
      return row;
    }
    const chosen = mode.thresholds[mode.default_threshold];
    const others = Object.entries(mode.thresholds).filter(([name]) => name !== mode.default_threshold)
      .map(([name, t]) => `${name} ${formatScore(t.threshold)}`).join(", ");
    row.append(
      el("td", "", metric),
      el("td", "", direction),
      el("td", "", `${mode.default_threshold} = ${formatScore(chosen.threshold)}${others ? ` (also ${others})` : ""}`),
      el("td", "", `${(100 * chosen.tpr).toFixed(1)}% / ${(100 * chosen.fmr).toFixed(2)}%`),
      el("td", "ok", "calibrated"),
    );
    return row;
  });
}

export function showModel() {
  return guarded(async () => {
    const { ready, models } = await modelFacts(true);
    const active = models.models.find((m) => m.active);
    const manifest = active && active.manifest;
    const info = $("model-info");
    info.replaceChildren();
    fact(info, "active model", ready.model);
    fact(info, "kind", ready.kind);
    fact(info, "provider", ready.provider);
    fact(info, "FAISS on GPU", ready.faiss_gpu ? "yes" : "no");
    fact(info, "readiness", ready.ready ? "ready" : `not ready: ${ready.reason}`);
    fact(info, "gallery size", ready.gallery_size);
    if (manifest) {
      fact(info, "description", manifest.description);
      fact(info, "default metric", manifest.default_metric);
      fact(info, "trained on", `${manifest.provenance.dataset}${manifest.provenance.synthetic ? " (synthetic)" : ""}`);
      if (manifest.provenance.notes) fact(info, "notes", manifest.provenance.notes);
    }
    $("model-scoring").tBodies[0].replaceChildren(...(manifest ? scoringRows(manifest, ready.metrics) : []));
  });
}
