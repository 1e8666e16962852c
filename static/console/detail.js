// Session page: copy the transcript to the clipboard; end a consultation
// that is still open (its recording was interrupted).
import { api } from "./api.js";
import { t } from "./i18n.js";
import { errorText } from "./notices.js";
import { copyText } from "./transcript-view.js";

const button = document.getElementById("copy-transcript");
if (button) {
  button.addEventListener("click", async () => {
    const lines = [];
    for (const li of document.querySelectorAll("#transcript li.final")) {
      lines.push(`[${li.querySelector(".ts").textContent}] ${li.querySelector(".text").textContent}`);
    }
    const ok = await copyText(lines.join("\n"));
    document.getElementById("copy-status").textContent = ok ? t("copied") : t("copy_failed");
  });
}

const end = document.getElementById("end-consultation");
if (end) {
  end.addEventListener("click", async () => {
    end.disabled = true;
    const failure = document.getElementById("end-error");
    try {
      // Ends and seals it (server side), also when no recording is attached.
      await api.endSession(end.dataset.sessionId);
      window.location.reload();
    } catch (err) {
      failure.textContent = errorText(err.code, err.message);
      failure.hidden = false;
      end.disabled = false;
    }
  });
}
