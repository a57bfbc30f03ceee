// The field app's one script (served from the app itself as /app.js; every page works without
// it). Two things: forms keep a draft on the device while they are typed in (1.5 s after the
// last keystroke, and when the tab is hidden or closed), and the home page shows a running
// sync's progress in place, reloading once when it ends.
"use strict";
(function () {
  const zh = document.documentElement.lang !== "en";

  const form = document.querySelector("form[data-autosave]");
  if (form) {
    const status = document.getElementById("autosave");
    let timer = null;
    let dirty = false;
    const body = () => {
      // Files are not drafts: only what was typed is kept.
      const b = new URLSearchParams(
        [...new FormData(form)].filter(([, v]) => typeof v === "string"));
      b.set("action", "draft");
      b.set("autosave", "1");
      return b;
    };
    const say = (text) => {
      if (status) status.textContent = text;
    };
    const save = () => {
      if (!dirty) return;
      dirty = false;
      fetch(form.dataset.autosave, { method: "POST", body: body(), credentials: "same-origin" })
        .then((r) => {
          if (!r.ok) throw new Error(String(r.status));
          const at = new Date().toTimeString().slice(0, 8);
          say(zh ? `草稿已自动暂存在本机（${at}）` : `Draft kept on this device (${at})`);
        })
        .catch(() => {
          dirty = true;
          say(zh ? "草稿暂存失败，请点“暂存草稿”" : "The draft could not be kept: press “Keep as draft”");
        });
    };
    const later = () => {
      dirty = true;
      clearTimeout(timer);
      timer = setTimeout(save, 1500);
    };
    form.addEventListener("input", later);
    form.addEventListener("change", later);
    form.addEventListener("submit", () => {
      dirty = false;
      clearTimeout(timer);
    });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden" && dirty) {
        dirty = false;
        clearTimeout(timer);
        navigator.sendBeacon(form.dataset.autosave, body());
      }
    });
  }

  const progress = document.getElementById("sync-progress");
  if (progress) {
    const finished = progress.dataset.finished;
    const poll = () =>
      fetch("/sync/progress", { credentials: "same-origin" })
        .then((r) => r.json())
        .then((s) => {
          if (!s.running || String(s.finished) !== finished) {
            location.reload();
            return;
          }
          progress.textContent = zh ? s.zh : s.en;
          setTimeout(poll, 500);
        })
        .catch(() => setTimeout(poll, 2000));
    setTimeout(poll, 500);
  }
})();
