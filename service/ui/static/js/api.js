// The public API, called with the operator's key (kept in this tab's sessionStorage only).
const KEY_NAME = "reid-api-key";
let onUnauthorized = () => {};

export function apiKey() {
  return sessionStorage.getItem(KEY_NAME) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_NAME, key);
  else sessionStorage.removeItem(KEY_NAME);
}

/** Called with the problem's detail when the service answers 401. */
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

export class ApiError extends Error {
  constructor(status, detail, body) {
    super(detail);
    this.status = status;
    this.body = body;
  }
}

/**
 * fetch() with the API key; a FormData body goes as multipart, `json` as application/json.
 * Non-2xx answers throw ApiError carrying the problem's detail (401 also opens the key prompt).
 */
export async function api(path, { method = "GET", form, json, accept = [] } = {}) {
  const headers = {};
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form;
  }
  const response = await fetch(path, { method, headers, body, credentials: "omit", cache: "no-store" });
  if (response.ok || accept.includes(response.status)) return response;
  let problem = {};
  try {
    problem = await response.json();
  } catch {
    problem = {};
  }
  const detail = typeof problem.detail === "string" ? problem.detail : `${response.status} ${response.statusText}`;
  if (response.status === 401) onUnauthorized(detail);
  throw new ApiError(response.status, detail, problem);
}

export async function apiJson(path, options) {
  return (await api(path, options)).json();
}

const entries = new Map();  // gallery id → Promise of the entry (null when gone)
const thumbnails = new Map();  // gallery id → Promise of a blob: URL (null without a stored image)

/** GET /gallery/{id}, cached (ids are never reused). */
export function entryInfo(id) {
  if (!entries.has(id)) {
    entries.set(id, apiJson(`/gallery/${id}`).catch((err) => {
      entries.delete(id);
      if (err.status === 404) return null;
      throw err;
    }));
  }
  return entries.get(id);
}

/** A blob: URL of the image stored with an entry (GET /gallery/{id}/image), or null when none is stored. */
export function thumbnailUrl(id) {
  if (!thumbnails.has(id)) {
    thumbnails.set(id, api(`/gallery/${id}/image`, { accept: [404] }).then(async (r) => {
      if (r.status === 404) return null;
      return URL.createObjectURL(await r.blob());
    }).catch((err) => {
      thumbnails.delete(id);
      throw err;
    }));
  }
  return thumbnails.get(id);
}

/** Forget deleted entries. */
export function forget(ids) {
  for (const id of ids) {
    entries.delete(id);
    const url = thumbnails.get(id);
    thumbnails.delete(id);
    if (url) url.then((u) => u && URL.revokeObjectURL(u)).catch(() => {});
  }
}
