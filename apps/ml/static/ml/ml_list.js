// The ML strategies list: each row's "Last training" and "Drift" cells follow the owner's
// "ml.progress", "ml.version" and "ml.drift" events (static/js/live.js).
(function () {
  "use strict";
  const table = document.getElementById("ml-strategies");
  if (!table || !window.Live) return;
  const LABELS = { queued: "Queued", running: "Training", promoted: "Promoted", rejected: "Rejected",
    failed: "Failed", cancelled: "Cancelled", retired: "Retired" };

  function row(id) { return table.querySelector(`tr[data-ml-id="${Number(id)}"]`); }

  function badge(status, text, title) {
    const span = document.createElement("span");
    span.className = "ml-status";
    span.dataset.status = status;
    span.textContent = text;
    if (title) span.title = title;
    return span;
  }

  function training(data) {
    const tr = row(data.ml_strategy);
    const cell = tr && tr.querySelector(".last-training");
    if (!cell) return;
    let text = `v${data.number} ${LABELS[data.status] || data.status}`;
    if (data.status === "running" && data.progress !== undefined) text += ` ${Math.round(Number(data.progress) * 100)}%`;
    cell.replaceChildren(badge(data.status, text, data.stage || data.error || ""));
  }

  window.Live.on("ml.progress", training);
  window.Live.on("ml.version", (data) => {
    training(data);
    const tr = row(data.ml_strategy);
    if (tr) { tr.classList.remove("fresh"); void tr.offsetWidth; tr.classList.add("fresh"); }
  });
  window.Live.on("ml.drift", (data) => {
    const tr = row(data.ml_strategy);
    const cell = tr && tr.querySelector(".drift-cell");
    if (!cell) return;
    const psi = Number(data.max_psi);
    cell.replaceChildren(badge(data.is_drift ? "drift" : "calm", `${data.is_drift ? "drift" : "stable"} · ${psi.toFixed(3)}`));
  });
})();
