// Gallery: enrol, people with entry counts, a person's entries, delete an entry, erase a person.
import { apiJson, forget } from "./api.js";
import { $, confirmAction, el, guarded, thumbnail } from "./dom.js";

const PAGE = 24;
const SCAN_PAGE = 1000;
const SCAN_LIMIT = 20000;  // entries read to count people; larger galleries show a note
const people = { all: [], page: 0, truncated: false, total: 0 };
const entries = { person: null, page: 0, total: 0 };

const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

/** Every person with their entry count and first entry id (read in pages of 1000 entries). */
async function scanPeople() {
  const counts = new Map();
  let offset = 0;
  let total = 0;
  do {
    const page = await apiJson(`/gallery?offset=${offset}&limit=${SCAN_PAGE}`);
    total = page.total;
    for (const item of page.items) {
      const person = counts.get(item.person_id) || { id: item.person_id, count: 0, first: item.id };
      person.count += 1;
      counts.set(item.person_id, person);
    }
    offset += page.items.length;
    if (!page.items.length) break;
  } while (offset < total && offset < SCAN_LIMIT);
  people.all = [...counts.values()].sort((a, b) => a.id.localeCompare(b.id));
  people.truncated = offset < total;
  people.total = total;
}

function renderPeople() {
  const needle = $("people-filter").value.trim().toLowerCase();
  const shown = people.all.filter((p) => p.id.toLowerCase().includes(needle));
  const pages = Math.max(1, Math.ceil(shown.length / PAGE));
  people.page = Math.min(people.page, pages - 1);
  const list = $("people-list");
  list.replaceChildren(...shown.slice(people.page * PAGE, (people.page + 1) * PAGE).map((person) => {
    const item = el("li", "person");
    item.dataset.person = person.id;
    item.append(thumbnail(person.first));
    item.append(el("span", "person-id", person.id), el("span", "count", plural(person.count, "entry", "entries")));
    const open = el("button", "open", "Entries");
    open.type = "button";
    open.addEventListener("click", () => openPerson(person.id));
    item.append(open);
    return item;
  }));
  if (!shown.length) list.append(el("li", "note", people.all.length ? "no person matches the filter" : "the gallery is empty"));
  $("people-page").textContent = `page ${people.page + 1} of ${pages}`;
  let total = `${plural(people.all.length, "person", "people")}, ${plural(people.total, "entry", "entries")}`;
  if (people.truncated) total += ` (counted over the first ${SCAN_LIMIT} entries)`;
  $("people-total").textContent = total;
}

async function refreshPeople() {
  await scanPeople();
  renderPeople();
}

function entryCard(item) {
  const card = el("li", "entry");
  card.dataset.id = String(item.id);
  card.append(thumbnail(item.id));
  const facts = el("div", "facts");
  facts.append(el("span", "", `#${item.id}`));
  if (item.camera_id !== null) facts.append(el("span", "note", `camera ${item.camera_id}`));
  facts.append(el("span", "note", item.created));
  if (Object.keys(item.metadata).length) facts.append(el("code", "metadata", JSON.stringify(item.metadata)));
  const remove = el("button", "danger delete", "Delete");
  remove.type = "button";
  remove.addEventListener("click", () => deleteEntry(item));
  facts.append(remove);
  card.append(facts);
  return card;
}

async function loadEntries() {
  const person = encodeURIComponent(entries.person);
  const page = await apiJson(`/gallery?person_id=${person}&offset=${entries.page * PAGE}&limit=${PAGE}`);
  entries.total = page.total;
  $("entries-person").textContent = entries.person;
  $("entries-total").textContent = plural(page.total, "entry", "entries");
  $("entries-list").replaceChildren(...page.items.map(entryCard));
  $("entries-page").textContent = `page ${entries.page + 1} of ${Math.max(1, Math.ceil(page.total / PAGE))}`;
  $("entries-panel").hidden = false;
}

function openPerson(person) {
  entries.person = person;
  entries.page = 0;
  return guarded(loadEntries);
}

async function deleteEntry(item) {
  const ok = await confirmAction(
    `Delete gallery entry #${item.id} of ${item.person_id}? Its embedding and stored image go with it; ` +
      "this cannot be undone.", "Delete entry");
  if (!ok) return;
  await guarded(async () => {
    const answer = await apiJson(`/gallery/${item.id}`, { method: "DELETE" });
    forget(answer.deleted_ids);
    await refreshPeople();
    if (entries.page > 0 && entries.total - 1 <= entries.page * PAGE) entries.page -= 1;
    if (people.all.some((p) => p.id === entries.person)) await loadEntries();
    else $("entries-panel").hidden = true;
  });
}

async function erasePerson() {
  const person = entries.person;
  const ok = await confirmAction(
    `Erase ${person}: all ${plural(entries.total, "entry", "entries")}, their embeddings and stored images are deleted from the ` +
      "gallery and every index. This is irreversible.", "Erase person");
  if (!ok) return;
  await guarded(async () => {
    const answer = await apiJson(`/gallery?person_id=${encodeURIComponent(person)}`, { method: "DELETE" });
    forget(answer.deleted_ids);
    $("entries-panel").hidden = true;
    entries.person = null;
    await refreshPeople();
  });
}

async function enrol(event) {
  event.preventDefault();
  await guarded(async () => {
    const form = new FormData();
    const person = $("enrol-person").value.trim();
    form.append("person_id", person);
    const camera = $("enrol-camera").value.trim();
    if (camera) form.append("camera_id", camera);
    const metadata = $("enrol-metadata").value.trim();
    if (metadata) form.append("metadata", metadata);
    for (const file of $("enrol-files").files) form.append("images", file, file.name);
    const answer = await apiJson("/gallery", { method: "POST", form });
    $("enrol-result").textContent =
      `Enrolled ${plural(answer.ids.length, "image", "images")} of ${answer.person_id} (ids ${answer.ids.join(", ")}); ` +
      `gallery size ${answer.gallery_size}.`;
    $("enrol-form").reset();
    await refreshPeople();
  });
}

function pager(prev, next, move) {
  $(prev).addEventListener("click", () => move(-1));
  $(next).addEventListener("click", () => move(1));
}

export function initGallery() {
  $("enrol-form").addEventListener("submit", enrol);
  $("people-filter").addEventListener("input", () => {
    people.page = 0;
    renderPeople();
  });
  $("people-refresh").addEventListener("click", () => guarded(refreshPeople));
  $("entries-erase").addEventListener("click", erasePerson);
  pager("people-prev", "people-next", (step) => {
    people.page = Math.max(0, people.page + step);
    renderPeople();
  });
  pager("entries-prev", "entries-next", (step) => {
    const last = Math.max(0, Math.ceil(entries.total / PAGE) - 1);
    entries.page = Math.min(last, Math.max(0, entries.page + step));
    guarded(loadEntries);
  });
}

export function showGallery() {
  return guarded(refreshPeople);
}
