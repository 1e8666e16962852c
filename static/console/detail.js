// Session page: copy the transcript to the clipboard.
import { t } from "./i18n.js";
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
