// The template editor's live preview: as the operator types, the preview pane is asked
// again from the server (the same rendering as the Preview button). Without this script
// the page works the same, one button press at a time.
"use strict";
(() => {
  const form = document.getElementById("editor");
  const pane = document.getElementById("preview");
  if (!form || !pane) return;
  let timer = 0;
  let asked = 0;
  const refresh = async () => {
    const mine = ++asked;
    const body = new FormData(form);
    body.set("action", "preview");
    try {
      const answer = await fetch(form.dataset.preview, { method: "POST", body, credentials: "same-origin" });
      if (!answer.ok || mine !== asked) return;
      const doc = new DOMParser().parseFromString(await answer.text(), "text/html");
      pane.replaceChildren(...Array.from(doc.body.childNodes));
      form.dataset.previewed = String(mine);
    } catch (error) {
      // the server is away: the Preview button still says so
    }
  };
  form.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 300);
  });
})();
