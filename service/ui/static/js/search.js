// Search: a query image (or a frame with drawn boxes) → ranked gallery entries or persons.
import { apiJson } from "./api.js";
import { legend, scale, scoreBar } from "./bars.js";
import { $, el, formatScore, guarded, thumbnail, verdictBadge } from "./dom.js";
import { HIGHER_IS_BETTER, fillMetrics } from "./model.js";

const state = { file: null, image: null, boxes: [], drag: null, factor: 1 };
const MAX_CANVAS = { width: 640, height: 360 };

function setFile(file) {
  state.file = file;
  state.boxes = [];
  const image = new Image();
  image.onload = () => {
    state.image = image;
    const factor = Math.min(2, MAX_CANVAS.width / image.naturalWidth, MAX_CANVAS.height / image.naturalHeight);
    state.factor = factor;
    const canvas = $("search-canvas");
    canvas.width = Math.max(1, Math.round(image.naturalWidth * factor));
    canvas.height = Math.max(1, Math.round(image.naturalHeight * factor));
    draw();
  };
  image.src = URL.createObjectURL(file);
}

function draw() {
  const canvas = $("search-canvas");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (state.image) ctx.drawImage(state.image, 0, 0, canvas.width, canvas.height);
  const all = state.drag ? state.boxes.concat([state.drag]) : state.boxes;
  ctx.lineWidth = 2;
  ctx.font = "14px sans-serif";
  all.forEach((box, i) => {
    const [x1, y1, x2, y2] = box.map((v) => v * state.factor);
    ctx.strokeStyle = "#ffcc00";
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    ctx.fillStyle = "#ffcc00";
    ctx.fillText(String(i + 1), x1 + 3, y1 + 15);
  });
  $("search-boxes").textContent = state.boxes.length
    ? `${state.boxes.length} box(es): ${JSON.stringify(state.boxes)}` : "no boxes: the whole image is the query";
}

function pointer(event) {
  const rect = $("search-canvas").getBoundingClientRect();
  return [(event.clientX - rect.left) / state.factor, (event.clientY - rect.top) / state.factor];
}

function wireCanvas() {
  const canvas = $("search-canvas");
  canvas.addEventListener("mousedown", (event) => {
    if (!state.image) return;
    const [x, y] = pointer(event);
    state.drag = [x, y, x, y];
  });
  canvas.addEventListener("mousemove", (event) => {
    if (!state.drag) return;
    const [x, y] = pointer(event);
    state.drag[2] = x;
    state.drag[3] = y;
    draw();
  });
  window.addEventListener("mouseup", () => {
    if (!state.drag) return;
    const [ax, ay, bx, by] = state.drag;
    state.drag = null;
    const box = [Math.min(ax, bx), Math.min(ay, by), Math.max(ax, bx), Math.max(ay, by)].map(Math.round);
    if (box[2] - box[0] >= 2 && box[3] - box[1] >= 2) state.boxes.push(box);
    draw();
  });
  $("search-clear").addEventListener("click", () => {
    state.boxes = [];
    draw();
  });
  const drop = $("search-drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) setFile(file);
  });
  $("search-file").addEventListener("change", (event) => {
    if (event.target.files[0]) setFile(event.target.files[0]);
  });
}

function entryRow(match, range, answer) {
  const row = el("li", "match");
  row.dataset.person = match.person_id;
  row.append(thumbnail(match.id));
  const facts = el("div", "facts");
  facts.append(el("span", "person-id", match.person_id));
  if (match.camera_id !== null) facts.append(el("span", "note", `camera ${match.camera_id}`));
  if (match.entries !== undefined) facts.append(el("span", "note", `${match.entries} of the top entries`));
  facts.append(verdictBadge(match.same_person));
  row.append(facts, scoreBar(match.score, answer.threshold, range, HIGHER_IS_BETTER[answer.metric]));
  return row;
}

function render(answer, boxes) {
  const results = $("search-results");
  results.replaceChildren();
  const rows = answer.results.map((r) => r.persons || r.matches);
  const range = scale(rows.flat().map((m) => m.score), answer.threshold, answer.metric);
  const direction = HIGHER_IS_BETTER[answer.metric] ? "higher is more similar" : "lower is more similar";
  $("search-summary").textContent = `${answer.metric} (${direction}), threshold ${
    answer.threshold === null ? "none" : formatScore(answer.threshold)}; gallery of ${answer.gallery_size
  } entries; ${answer.model}; ${answer.timings.total_ms.toFixed(0)} ms`;
  rows.forEach((row, q) => {
    const block = el("section", "query");
    let title = rows.length > 1 || boxes.length ? `Query ${q + 1}` : "Query";
    if (boxes.length && rows.length === boxes.length) title += ` (box ${JSON.stringify(boxes[q])})`;
    else if (boxes.length) title += ` (tracklet of ${boxes.length} boxes)`;
    block.append(el("h3", "", title), legend(range, answer.threshold, HIGHER_IS_BETTER[answer.metric]));
    const list = el("ol", "matches");
    for (const match of row) list.append(entryRow(match, range, answer));
    if (!row.length) list.append(el("li", "note", "no gallery entry matched"));
    block.append(list);
    results.append(block);
  });
}

async function runSearch(event) {
  event.preventDefault();
  if (!state.file) {
    $("search-summary").textContent = "Choose or drop an image first.";
    return;
  }
  const form = new FormData();
  form.append("images", state.file, state.file.name);
  form.append("top_k", $("search-topk").value || "10");
  if ($("search-metric").value) form.append("metric", $("search-metric").value);
  if ($("search-group").checked) form.append("group_by", "person");
  const boxes = state.boxes.slice();
  if (boxes.length) form.append("boxes", JSON.stringify(boxes));
  if ($("search-aggregate").checked) form.append("aggregate", "mean");
  await guarded(async () => {
    $("search-results").setAttribute("aria-busy", "true");
    try {
      render(await apiJson("/search", { method: "POST", form }), boxes);
    } finally {
      $("search-results").removeAttribute("aria-busy");
    }
  });
}

export function initSearch() {
  wireCanvas();
  draw();
  $("search-form").addEventListener("submit", runSearch);
}

export function showSearch() {
  return guarded(() => fillMetrics($("search-metric")));
}
