// Keeps the dashboard current: every 15 s the page is fetched again and its
// body (live sessions, usage bars, already rendered and translated by the
// server) replaces the old one. Paused while the tab is hidden.

const REFRESH_MS = 15000;
const body = document.getElementById("dashboard-body");
const stamp = document.getElementById("dashboard-updated");

async function refresh() {
  if (document.hidden) return;
  try {
    const response = await fetch(window.location.href, { credentials: "same-origin" });
    if (!response.ok) return; // signed out or no longer admin: keep what is shown
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.getElementById("dashboard-body");
    if (fresh) {
      body.replaceChildren(...fresh.childNodes);
      stamp.textContent = new Date().toLocaleTimeString(document.documentElement.lang || undefined);
    }
  } catch {
    // Offline for a moment: try again at the next tick.
  }
}

setInterval(refresh, REFRESH_MS);
