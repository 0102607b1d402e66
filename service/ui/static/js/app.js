// The console's entry point: tabs, the API key prompt, and each page's init/show.
import { apiKey, setApiKey, whenUnauthorized } from "./api.js";
import { $ } from "./dom.js";
import { initGallery, showGallery } from "./gallery.js";
import { showModel } from "./model.js";
import { initSearch, showSearch } from "./search.js";
import { initVerify, showVerify } from "./verify.js";

const PAGES = { search: showSearch, verify: showVerify, gallery: showGallery, model: showModel };
let current = "search";

function showTab(name) {
  current = name;
  for (const button of document.querySelectorAll(".tab")) {
    button.classList.toggle("active", button.dataset.tab === name);
  }
  for (const page of Object.keys(PAGES)) $(`page-${page}`).hidden = page !== name;
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  return PAGES[name]();
}

function keyState() {
  $("key-state").textContent = apiKey() ? "API key set for this tab" : "no API key";
}

function askForKey(message) {
  $("key-message").textContent = message;
  $("key-prompt").hidden = false;
  $("key-input").value = "";
  $("key-input").focus();
}

function wireKey() {
  whenUnauthorized((detail) => askForKey(`The service answered 401: ${detail}. Enter an API key.`));
  $("key-change").addEventListener("click", () => askForKey("Enter the API key to use in this tab."));
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setApiKey($("key-input").value.trim());
    $("key-prompt").hidden = true;
    keyState();
    showTab(current);
  });
  keyState();
}

document.addEventListener("DOMContentLoaded", () => {
  wireKey();
  initSearch();
  initVerify();
  initGallery();
  for (const button of document.querySelectorAll(".tab")) {
    button.addEventListener("click", () => showTab(button.dataset.tab));
  }
  const start = location.hash.slice(1);
  showTab(start in PAGES ? start : "search");
});
