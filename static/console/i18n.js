// Interface strings translated by Django (gettext) and embedded in the page
// as JSON (<script type="application/json" id="console-i18n">), so the
// modules need no catalogue request and work on closed networks.

let catalog = null;

function load() {
  if (catalog === null) {
    const el = document.getElementById("console-i18n");
    try {
      catalog = el ? JSON.parse(el.textContent) : {};
    } catch {
      catalog = {};
    }
  }
  return catalog;
}

export function t(key, params = {}) {
  let text = load()[key];
  if (text === undefined) text = key;
  for (const [name, value] of Object.entries(params)) text = text.split(`{${name}}`).join(String(value));
  return text;
}
