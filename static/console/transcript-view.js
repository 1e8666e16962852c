// Renders Transcript events into a list: a partial is provisional and
// replaced in place by later revisions of its segment_id; a final is fixed
// (later events for it are ignored). Lines stay ordered by start time. The
// list follows the newest line unless the user has scrolled back.

import { t } from "./i18n.js";

const FOLLOW_SLACK_PX = 32;

export function formatMs(ms) {
  const total = Math.max(0, Math.floor(Number(ms || 0) / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const mm = String(m).padStart(2, "0");
  const ss = String(s).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

export class TranscriptView {
  constructor(list, { jumpButton = null, emptyNote = null } = {}) {
    this.list = list;
    this.jumpButton = jumpButton;
    this.emptyNote = emptyNote;
    this.lines = new Map(); // segment_id -> {li, final, start}
    this.follow = true;
    list.addEventListener("scroll", () => {
      this.follow = this.atBottom();
      this.updateJump();
    });
    if (jumpButton) {
      jumpButton.addEventListener("click", () => {
        this.follow = true;
        this.scrollToEnd();
        this.updateJump();
      });
    }
    for (const li of list.querySelectorAll("li[data-segment-id]")) {
      this.lines.set(li.dataset.segmentId, { li, final: li.dataset.final === "true", start: Number(li.dataset.start) });
    }
    this.updateEmpty();
  }

  clear() {
    this.lines.clear();
    this.list.replaceChildren();
    this.follow = true;
    this.updateJump();
    this.updateEmpty();
  }

  atBottom() {
    return this.list.scrollTop + this.list.clientHeight >= this.list.scrollHeight - FOLLOW_SLACK_PX;
  }

  scrollToEnd() {
    this.list.scrollTop = this.list.scrollHeight;
  }

  updateJump() {
    if (this.jumpButton) this.jumpButton.hidden = this.follow;
  }

  updateEmpty() {
    if (this.emptyNote) this.emptyNote.hidden = this.lines.size > 0;
  }

  apply(event) {
    if (!event || event.segment_id === undefined || event.segment_id === null) return;
    const id = String(event.segment_id);
    const start = Number(event.start_ms || 0);
    let line = this.lines.get(id);
    if (line && line.final) return; // finals are immutable and sent once
    if (!line) {
      const li = document.createElement("li");
      li.dataset.segmentId = id;
      li.dataset.start = String(start);
      const time = document.createElement("span");
      time.className = "ts";
      const text = document.createElement("span");
      text.className = "text";
      li.append(time, text);
      line = { li, final: false, start };
      this.lines.set(id, line);
      this.insertOrdered(line);
    }
    line.final = Boolean(event.is_final);
    line.start = start;
    const { li } = line;
    li.dataset.start = String(start);
    li.dataset.final = line.final ? "true" : "false";
    li.classList.toggle("partial", !line.final);
    li.classList.toggle("final", line.final);
    li.querySelector(".ts").textContent = formatMs(start);
    li.querySelector(".text").textContent = event.text || "";
    li.title = line.final ? "" : t("provisional");
    this.updateEmpty();
    if (this.follow) this.scrollToEnd();
  }

  insertOrdered(line) {
    // Almost always appended; walk back from the end for the rare early one.
    let before = null;
    for (let node = this.list.lastElementChild; node; node = node.previousElementSibling) {
      if (Number(node.dataset.start) <= line.start) break;
      before = node;
    }
    this.list.insertBefore(line.li, before);
  }

  finalsText() {
    const out = [];
    for (const li of this.list.querySelectorAll("li.final")) {
      out.push(`[${li.querySelector(".ts").textContent}] ${li.querySelector(".text").textContent}`);
    }
    return out.join("\n");
  }

  finalCount() {
    return this.list.querySelectorAll("li.final").length;
  }
}

export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // permission refused: fall back to a selection copy
    }
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}
