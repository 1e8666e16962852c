// The viewer page (a second screen): follows /ws/v1/sessions/{id}/live.
// On connect the server replays the finals so far, then streams every
// Transcript event; the view dedupes by segment_id, so a reconnect that
// replays again changes nothing on screen.

import { api } from "./api.js";
import { t } from "./i18n.js";
import { socketUrl } from "./stream-client.js";
import { TranscriptView, copyText } from "./transcript-view.js";
import { errorText, stateText } from "./notices.js";

const RETRY_DELAYS_MS = [500, 1000, 2000, 3000, 5000];
const FATAL = new Set([4400, 4403, 4404]);

const $ = (id) => document.getElementById(id);
const root = $("live-root");
const stateEl = $("connection-state");
const alerts = $("alerts");
const view = new TranscriptView($("transcript"), { jumpButton: $("jump-latest"), emptyNote: $("transcript-empty") });

let attempts = 0;
let ended = false;

function setState(state) {
  stateEl.dataset.state = state;
  stateEl.textContent = stateText(state);
}

async function token() {
  // A token when the API gives one; otherwise the signed-in session on the
  // same origin authenticates the socket.
  try {
    return (await api.streamToken(root.dataset.sessionId)).stream_token;
  } catch {
    return null;
  }
}

async function connect() {
  setState(attempts ? "reconnecting" : "connecting");
  const ws = new WebSocket(socketUrl(root.dataset.liveUrl, await token()));
  ws.onmessage = (event) => {
    if (typeof event.data !== "string") return;
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch {
      return;
    }
    if (msg.type === "Begin") {
      attempts = 0;
      setState("watching");
    } else if (msg.type === "Transcript") {
      view.apply(msg);
    } else if (msg.type === "End") {
      ended = true;
      setState("ended");
    } else if (msg.type === "Error" && msg.retryable === false) {
      alerts.textContent = errorText(msg.code, msg.message);
      alerts.hidden = false;
    }
  };
  ws.onclose = (event) => {
    if (ended || event.code === 1000) {
      ended = true;
      setState("ended");
      return;
    }
    if (FATAL.has(event.code) || attempts >= 60) {
      setState("failed");
      alerts.textContent = errorText(`close_${event.code}`, event.reason);
      alerts.hidden = false;
      return;
    }
    attempts += 1;
    setState("reconnecting");
    setTimeout(connect, RETRY_DELAYS_MS[Math.min(attempts - 1, RETRY_DELAYS_MS.length - 1)]);
  };
}

$("copy-transcript").addEventListener("click", async () => {
  const ok = await copyText(view.finalsText());
  $("copy-status").textContent = ok ? t("copied") : t("copy_failed");
});

if (root.dataset.follow === "true") connect();
else setState("ended");
