// The record page: microphone -> 16 kHz PCM16 frames -> producer socket,
// with the live transcript, level meter, elapsed time and connection state.

import { api } from "./api.js";
import { MicrophoneUnavailable, startCapture } from "./audio-capture.js";
import { t } from "./i18n.js";
import { errorText, queuedText, showNotice, stateText, warningText } from "./notices.js";
import { StreamClient } from "./stream-client.js";
import { TranscriptView, copyText, formatMs } from "./transcript-view.js";

const BYTES_PER_MS = 32; // 16 kHz, 16-bit mono
const ZERO_ID = "00000000-0000-0000-0000-000000000000"; // placeholder in the URL templates

const $ = (id) => document.getElementById(id);
const form = $("record-form");
const startButton = $("start");
const stopButton = $("stop");
const stateEl = $("connection-state");
const elapsedEl = $("elapsed");
const levelBar = $("mic-level");
const notices = $("notices");
const alerts = $("alerts");
const links = $("session-links");
const view = new TranscriptView($("transcript"), { jumpButton: $("jump-latest"), emptyNote: $("transcript-empty") });

let capture = null;
let client = null;
let session = null;
let elapsedTimer = null;
let stopping = false;

function setState(state, detail) {
  stateEl.dataset.state = state;
  stateEl.textContent = stateText(state);
  if (state === "failed" && detail) showAlert(errorText(detail.code, detail.detail));
  // Ended by the server (elsewhere, or an error): release the microphone
  // and give the page back; a failed recording's session is ended too, so
  // nothing stays live holding one of the clinic's slots.
  if ((state === "failed" || state === "closed") && !stopping) {
    if (state === "failed" && session) api.endSession(session.id).catch(() => {});
    teardown();
  }
}

function showAlert(text) {
  alerts.textContent = text;
  alerts.hidden = !text;
}

function setLevel(rms) {
  // -60 dBFS .. 0 dBFS mapped onto the bar.
  const db = rms > 0 ? 20 * Math.log10(rms) : -100;
  const value = Math.max(0, Math.min(1, (db + 60) / 60));
  levelBar.style.setProperty("--level", value.toFixed(3));
  levelBar.setAttribute("aria-valuenow", String(Math.round(value * 100)));
}

function setRecording(recording) {
  // On a phone the form folds away while recording (console.css), so Stop
  // and the transcript share the screen.
  document.body.classList.toggle("recording", recording);
  startButton.disabled = recording;
  stopButton.disabled = !recording;
  for (const el of form.querySelectorAll("input, select")) el.disabled = recording;
}

function showLinks(id) {
  const viewer = $("viewer-link");
  const detail = $("session-link");
  viewer.href = links.dataset.liveTemplate.replace(ZERO_ID, id);
  detail.href = links.dataset.detailTemplate.replace(ZERO_ID, id);
  $("viewer-line").hidden = false;
  links.hidden = false;
}

// The patient's consent, recorded with the session (the clinic may refuse
// audio without it: the form marks the choice required then).
function consentFields() {
  const chosen = form.querySelector('input[name="consent_method"]:checked');
  if (!chosen) return {};
  return { consent_method: chosen.value, consent_note: $("consent-note").value.trim() };
}

async function start(event) {
  event.preventDefault();
  showAlert("");
  view.clear();
  notices.replaceChildren();
  setRecording(true);
  stopButton.disabled = true; // until there is a stream to stop
  setState("starting");
  const early = []; // frames captured before the socket exists
  try {
    capture = await startCapture({
      onFrame: (bytes) => (client ? client.sendAudio(bytes) : early.push(bytes)),
      onLevel: setLevel,
    });
  } catch (err) {
    setRecording(false);
    setState("idle");
    showAlert(errorText(err instanceof MicrophoneUnavailable ? err.message : "no_device"));
    return;
  }
  const resumeId = form.dataset.resumeId;
  let token = null;
  try {
    if (resumeId) {
      // Continue a consultation left earlier: its stored audio and finals stay.
      session = { id: resumeId, stream_url: form.dataset.resumeStream };
      token = (await api.streamToken(resumeId)).stream_token;
    } else {
      session = await api.createSession({
        external_ref: $("external-ref").value.trim(),
        language: $("language").value,
        ...consentFields(),
      });
      token = session.stream_token;
    }
  } catch (err) {
    await capture.stop();
    capture = null;
    setRecording(false);
    setState("idle");
    showAlert(errorText(err.code, err.message));
    return;
  }
  const sessionId = session.id;
  client = new StreamClient({
    url: session.stream_url,
    token,
    freshToken: async () => (await api.streamToken(sessionId)).stream_token,
    keepCopy: Boolean(window.__voiceaiKeepCopy),
    resuming: Boolean(resumeId),
    on: {
      state: setState,
      transcript: (msg) => view.apply(msg),
      warning: (msg) => showNotice(notices, warningText(msg), "warning"),
      queued: (msg) => showNotice(notices, queuedText(msg), "info"),
      // A non-retryable error ends the recording: the alert says it once.
      error: (msg) => msg.retryable && showNotice(notices, errorText(msg.code, msg.message), "warning"),
    },
  });
  window.__voiceaiRecorder = { client, session };
  for (const bytes of early) client.sendAudio(bytes);
  showLinks(sessionId);
  client.start();
  stopButton.disabled = false;
  elapsedTimer = setInterval(() => {
    elapsedEl.textContent = formatMs(client.produced / BYTES_PER_MS);
  }, 250);
  window.addEventListener("beforeunload", warnUnload);
}

function warnUnload(event) {
  if (client && !client.done) {
    event.preventDefault();
    event.returnValue = "";
  }
}

// Leaving the page mid-recording pauses the consultation (the server keeps
// it resumable for the clinic's grace period, then ends and seals it): same-
// tab links and the header's forms ask first, in the page's own words.
function recording() {
  return Boolean(client && !client.done);
}

function confirmLeave(event) {
  if (!recording()) return;
  if (!window.confirm(t("leave_confirm", { minutes: form.dataset.graceMinutes }))) {
    event.preventDefault();
    return;
  }
  window.removeEventListener("beforeunload", warnUnload);
}

document.addEventListener("click", (event) => {
  const link = event.target.closest && event.target.closest("a[href]");
  if (!link || link.target === "_blank" || link.hasAttribute("download") || link.getAttribute("href").startsWith("#")) {
    return;
  }
  confirmLeave(event);
});
document.addEventListener("submit", (event) => {
  if (event.target !== form) confirmLeave(event);
});

async function releaseMicrophone() {
  const running = capture;
  capture = null;
  if (running) await running.stop();
  setLevel(0);
}

async function teardown() {
  await releaseMicrophone();
  clearInterval(elapsedTimer);
  if (client) elapsedEl.textContent = formatMs(client.produced / BYTES_PER_MS);
  window.removeEventListener("beforeunload", warnUnload);
  setRecording(false);
}

async function stop() {
  stopping = true;
  stopButton.disabled = true;
  try {
    await releaseMicrophone(); // the last partial frame reaches the client first
    await client.finish();
    try {
      await api.endSession(session.id);
    } catch {
      // Already ended by CloseStream: nothing to do.
    }
    showNotice(notices, t("saved_note"), "info");
    // Ready for the next patient: no reference or live view of this one.
    $("external-ref").value = "";
    $("viewer-line").hidden = true;
    // A resumed consultation is done: show its page (the form is for new ones).
    if (form.dataset.resumeId) window.location.assign(links.dataset.detailTemplate.replace(ZERO_ID, session.id));
  } catch {
    // The state line and alert already say what went wrong.
  } finally {
    stopping = false;
    await teardown();
  }
}

form.addEventListener("submit", start);
stopButton.addEventListener("click", stop);
$("copy-transcript").addEventListener("click", async () => {
  const ok = await copyText(view.finalsText());
  $("copy-status").textContent = ok ? t("copied") : t("copy_failed");
});
setState("idle");
