// DOM helpers. Text from the service (person ids, metadata, messages) only ever goes in as textContent.
import { entryInfo, thumbnailUrl } from "./api.js";

export const $ = (id) => document.getElementById(id);

/** An element with a class and text content (never HTML). */
export function el(tag, className = "", text = "") {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== "") node.textContent = String(text);
  return node;
}

export function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

/** Run an async UI action; its error (a problem's detail) is shown in the error bar. */
export async function guarded(action) {
  showError("");
  try {
    return await action();
  } catch (err) {
    if (err && err.status === 401) return undefined;  // the key prompt says it
    showError(err && err.message ? err.message : String(err));
    return undefined;
  }
}

/** Ask before an irreversible action; resolves true when the operator confirms. */
export function confirmAction(text, okLabel) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

export function formatScore(x) {
  return Number.isFinite(x) ? x.toFixed(4) : String(x);
}

/** A same / different badge for a decision (nothing when there is no threshold). */
export function verdictBadge(same) {
  if (same === null || same === undefined) return el("span", "badge none", "no threshold");
  return same ? el("span", "badge same", "same person") : el("span", "badge diff", "different");
}

/** A figure with the entry's stored image (or its id and metadata when no image is stored). */
export function thumbnail(id) {
  const figure = el("figure", "thumb");
  const caption = el("figcaption", "", `#${id}`);
  figure.append(caption);
  thumbnailUrl(id).then((url) => {
    if (url) {
      const img = el("img");
      img.src = url;
      img.alt = `gallery entry ${id}`;
      figure.prepend(img);
      return;
    }
    figure.classList.add("no-image");
    entryInfo(id).then((entry) => {
      if (entry && Object.keys(entry.metadata).length) {
        figure.append(el("code", "metadata", JSON.stringify(entry.metadata)));
      }
    });
  }).catch(() => figure.classList.add("no-image"));
  return figure;
}
