// The SOAP note panel on a consultation's page. Each sentence's evidence
// link marks the transcript lines it was drawn from and plays their audio
// span; a draft still being written is polled until it is ready (the page
// then reloads: the panel is rendered by the server); signing asks for a
// confirmation first. Without JavaScript the links still jump to the
// first line and the panel offers a refresh link.

import { apiFetch } from "./api.js";
import { t } from "./i18n.js";

const POLL_FIRST_MS = 1500;
const POLL_MAX_MS = 10_000;
const WORKING = new Set(["queued", "generating"]);

/** Segment ids of an evidence link or sentence field (space-separated). */
export function evidenceIds(el) {
  return (el.dataset.evidence || "").split(/\s+/).filter(Boolean);
}

/** The audio span covering the given transcript lines: [startMs, endMs],
 * or null when it cannot be told. */
export function evidenceSpan(lines) {
  let start = Infinity;
  let end = -Infinity;
  for (const li of lines) {
    const s = Number(li.dataset.start);
    const e = Number(li.dataset.end || li.dataset.start);
    if (Number.isFinite(s)) start = Math.min(start, s);
    if (Number.isFinite(e)) end = Math.max(end, e);
  }
  return Number.isFinite(start) && end >= start ? [start, end] : null;
}

/** Marks the evidence lines (and only them) in the transcript; returns them. */
export function highlightEvidence(ids) {
  for (const li of document.querySelectorAll("#transcript li.evidence")) {
    li.classList.remove("evidence");
    li.removeAttribute("aria-current");
  }
  const lines = [];
  for (const id of ids) {
    const li = document.getElementById(`seg-${id}`);
    if (!li) continue;
    li.classList.add("evidence");
    // Screen readers hear which lines are marked, not only see a colour.
    li.setAttribute("aria-current", "true");
    lines.push(li);
  }
  if (lines.length) lines[0].scrollIntoView({ block: "nearest" });
  return lines;
}

/** Plays one span of an <audio> element and pauses at its end. A later
 * call replaces the span (the earlier stop no longer applies). */
export class SpanPlayer {
  constructor(audio) {
    this.audio = audio;
    this.stopAt = null;
    this.timer = null;
    // timeupdate fires about four times a second; the timer below catches
    // the end between two of them.
    audio.addEventListener("timeupdate", () => {
      if (this.stopAt !== null && audio.currentTime >= this.stopAt) this.stop();
    });
  }

  async metadata() {
    if (this.audio.readyState >= 1) return;
    await new Promise((resolve, reject) => {
      this.audio.addEventListener("loadedmetadata", resolve, { once: true });
      this.audio.addEventListener("error", () => reject(this.audio.error), { once: true });
      this.audio.preload = "metadata";
      this.audio.load();
    });
  }

  async play(startMs, endMs) {
    this.stop();
    await this.metadata();
    this.audio.currentTime = startMs / 1000;
    this.stopAt = endMs / 1000;
    await this.audio.play();
    this.schedule();
  }

  schedule() {
    if (this.stopAt === null) return;
    const left = (this.stopAt - this.audio.currentTime) * 1000;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.stopAt === null) return;
      if (this.audio.currentTime >= this.stopAt - 0.05) this.stop();
      else this.schedule(); // started late (buffering): wait for the rest
    }, Math.max(20, left));
  }

  stop() {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.stopAt !== null) this.audio.pause();
    this.stopAt = null;
  }
}

function announce(text) {
  const status = document.getElementById("evidence-status");
  if (status) status.textContent = text;
}

function wireEvidence(panel) {
  const audio = document.getElementById("session-audio");
  const player = audio ? new SpanPlayer(audio) : null;
  if (player) window.__voiceaiSpanPlayer = player; // the browser tests read stopAt
  panel.addEventListener("click", async (event) => {
    const link = event.target.closest("a.evidence");
    if (!link || !panel.contains(link)) return;
    event.preventDefault();
    const lines = highlightEvidence(evidenceIds(link));
    if (!lines.length) {
      announce(t("evidence_missing"));
      return;
    }
    announce(lines.length === 1 ? t("evidence_shown_one") : t("evidence_shown_many", { n: lines.length }));
    const span = evidenceSpan(lines);
    if (!player || !span) return;
    try {
      await player.play(span[0], span[1]);
    } catch {
      announce(t("evidence_no_audio"));
    }
  });
  // Editing a sentence shows where it came from, without playing.
  panel.addEventListener("focusin", (event) => {
    const field = event.target.closest("textarea[data-evidence]");
    if (field) highlightEvidence(evidenceIds(field));
  });
}

function wireConfirm(panel) {
  // Signing cannot be undone: the button that signs asks first.
  for (const form of panel.querySelectorAll("form")) {
    form.addEventListener("submit", (event) => {
      const message = event.submitter && event.submitter.dataset.confirm;
      if (message && !window.confirm(message)) event.preventDefault();
    });
  }
}

function wirePolling(panel) {
  const url = panel.dataset.statusUrl;
  if (!url || !WORKING.has(panel.dataset.status)) return;
  const progress = document.getElementById("note-progress");
  let delay = POLL_FIRST_MS;
  const poll = async () => {
    try {
      const data = await apiFetch(url);
      // Queued -> generating only moves the bar; a draft, a failure or a
      // new version is rendered by the server.
      if (!WORKING.has(data.status) || String(data.version) !== panel.dataset.version) {
        window.location.reload();
        return;
      }
      if (progress && typeof data.progress === "number") {
        progress.value = data.progress;
        progress.textContent = `${data.progress}%`;
      }
      const label = document.getElementById("note-working-label");
      if (label && data.status !== panel.dataset.status) label.textContent = t("note_generating");
      panel.dataset.status = data.status;
    } catch {
      // A network blip: keep polling, more slowly.
    }
    delay = Math.min(POLL_MAX_MS, Math.round(delay * 1.5));
    setTimeout(poll, delay);
  };
  setTimeout(poll, delay);
}

const panel = document.getElementById("note");
if (panel) {
  wireEvidence(panel);
  wireConfirm(panel);
  wirePolling(panel);
}
