// Plain-words messages for what the server and the browser report.

import { t } from "./i18n.js";

const ERROR_KEYS = {
  insecure_context: "err_insecure_context",
  denied: "err_mic_denied",
  no_device: "err_no_device",
  quota_exceeded: "err_quota",
  concurrent_sessions_exceeded: "err_quota",
  close_4429: "err_quota",
  audio_minutes_exhausted: "err_minutes",
  taken_over: "err_taken_over",
  producer_active: "err_conflict",
  close_4404: "err_not_found",
  not_found: "err_not_found",
  close_4409: "err_conflict",
  session_ended: "err_conflict",
  close_4400: "err_protocol",
  close_4401: "err_token",
  gave_up: "err_gave_up",
  resume_gap: "err_resume_gap",
  network: "err_network",
  clinic_suspended: "err_suspended",
  language_not_supported: "err_language",
  unsupported_language: "err_language",
  engine_refused: "err_engine_refused",
  consent_required: "err_consent",
  close_4428: "err_consent",
};

export function errorText(code, detail) {
  const key = ERROR_KEYS[code];
  if (key) return t(key);
  return detail ? t("err_generic_detail", { detail }) : t("err_generic");
}

export function warningText(msg) {
  const key = `warn_${msg.code}`;
  const text = t(key);
  return text === key ? t("warn_generic", { message: msg.message || msg.code || "" }) : text;
}

export function queuedText(msg) {
  return t("queued", { position: msg.position ?? "?" });
}

export function stateText(state) {
  return t(`state_${state}`);
}

export function showNotice(container, text, kind = "info") {
  const item = document.createElement("p");
  item.className = `notice notice-${kind}`;
  item.textContent = text;
  container.prepend(item);
  while (container.children.length > 4) container.lastElementChild.remove();
}
