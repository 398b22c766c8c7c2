/* Upload a film to POST /api/v1/predict and show the alert the appliance would send. */
"use strict";
applyRegionToggle(document.getElementById("show-region"));
document.getElementById("form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const file = document.getElementById("file").files[0];
  if (!file) return;
  const error = document.getElementById("error"), result = document.getElementById("result");
  error.hidden = true; result.hidden = true;
  document.getElementById("busy").hidden = false;
  document.getElementById("send").disabled = true;
  try {
    const form = new FormData();
    form.append("file", file, file.name);
    const r = await fetch("/api/v1/predict", {method: "POST", body: form});
    const body = await r.json();
    if (!r.ok) {
      error.textContent = "Not processed (" + (body.rejected || r.status) + "): " + body.reason;
      error.hidden = false;
      return;
    }
    const a = body.alert, f = a.finding;
    const warn = useWarning(a.intended_use);
    document.getElementById("summary").replaceChildren(
      el("div", {class: "decision " + (f.pneumothorax ? "positive" : "negative"), text: f.pneumothorax ? "PNEUMOTHORAX SUSPECTED" : "No pneumothorax detected"}),
      el("div", {text: "probability " + fmtP(f.probability) + (f.pneumothorax ? " \u00b7 side " + (f.side || "-") + " \u00b7 " + fmtArea(f) : "")}),
      el("div", {class: "muted", text: a.source.file_name + " \u00b7 " + modelsText(a.models)}),
      warn ? el("div", {class: "demo", text: warn}) : null);
    const film = buildFilm(a, "data:image/jpeg;base64," + body.overlay_jpeg_base64);
    film.id = "film";
    document.getElementById("film").replaceWith(film);
    document.getElementById("json").textContent = JSON.stringify(a, null, 1);
    result.hidden = false;
  } catch (e) {
    error.textContent = "Upload failed: " + e.message;
    error.hidden = false;
  } finally {
    document.getElementById("busy").hidden = true;
    document.getElementById("send").disabled = false;
  }
});
