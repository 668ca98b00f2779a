// The model page (apps/ml/templates/ml/detail.html): the training card follows the owner's
// "ml.progress" events for this ML strategy (progress bar, stage), and the result card shows the
// "ml.version" event when the training finishes: promoted or rejected with the comparison's
// reason, or failed with its error, with the out-of-sample metrics. The page then reloads
// itself (unless the user is typing in one of its forms) so the versions table and the charts
// include the new version. A status poll every few seconds covers events sent before the
// socket opened. "ml.drift" events announce a new drift check.
(function () {
  "use strict";
  const configEl = document.getElementById("ml-page-config");
  if (!configEl) return;
  const cfg = JSON.parse(configEl.textContent);
  const $ = (id) => document.getElementById(id);
  const card = $("training");
  const bar = $("training-progress");
  const pctText = $("training-progress-text");
  const stage = $("training-stage");
  const statusText = $("training-status");
  const numberText = $("training-number");
  const result = $("training-result");
  const trainButton = $("train-now");
  const ACTIVE = ["queued", "running"];
  const LABELS = { queued: "Queued", running: "Training", promoted: "Promoted", rejected: "Rejected",
    failed: "Failed", cancelled: "Cancelled", retired: "Retired" };
  const POLL_MS = 3000;
  const RELOAD_MS = 2500;

  let followed = cfg.active ? cfg.active.version : null;
  let best = cfg.active ? Number(cfg.active.progress) || 0 : 0;
  const shown = new Set();
  let polling = false;

  function ours(data) { return data && Number(data.ml_strategy) === Number(cfg.mlStrategy); }

  function fixed(value, digits) {
    const x = Number(value);
    return value === null || value === undefined || !Number.isFinite(x) ? "–" : x.toFixed(digits);
  }
  function percent(value, signed) {
    const x = Number(value);
    if (value === null || value === undefined || !Number.isFinite(x)) return "–";
    const text = `${(x * 100).toFixed(2)}%`;
    return signed && x >= 0 ? `+${text}` : text;
  }

  function onProgress(data) {
    if (!ours(data)) return;
    if (!ACTIVE.includes(data.status)) { onFinished(data); return; }
    if (data.version !== followed) { followed = data.version; best = 0; }
    best = Math.max(best, Number(data.progress) || 0);
    const pct = Math.round(best * 100);
    card.hidden = false;
    card.dataset.status = data.status;
    bar.value = pct;
    pctText.textContent = `${pct}%`;
    statusText.textContent = LABELS[data.status] || data.status;
    numberText.textContent = `v${data.number}`;
    stage.textContent = data.stage || (data.status === "queued" ? "Waiting for a worker on the ml queue" : "");
    if (trainButton) trainButton.disabled = true;
    startPolling();
  }

  function reasonOf(data) {
    const comparison = data.comparison || {};
    if (data.status === "failed") return data.error || "No reason was recorded.";
    if (comparison.reason) return comparison.reason;
    if (data.status === "promoted") return "Promoted: the first model of this strategy.";
    if (data.status === "cancelled") return "Cancelled before it finished.";
    return "";
  }

  function onFinished(data) {
    if (!ours(data) || ACTIVE.includes(data.status) || shown.has(data.version)) return;
    shown.add(data.version);
    if (data.version === followed || followed === null) {
      card.dataset.status = data.status;
      statusText.textContent = LABELS[data.status] || data.status;
      if (data.status !== "failed" && data.status !== "cancelled") { bar.value = 100; pctText.textContent = "100%"; }
      stage.textContent = data.status === "failed" ? "Failed" : "Finished";
    }
    result.dataset.status = data.status;
    result.dataset.number = data.number;
    const badge = document.createElement("span");
    badge.className = "ml-status";
    badge.id = "result-status";
    badge.dataset.status = data.status;
    badge.textContent = LABELS[data.status] || data.status;
    $("result-title").replaceChildren(document.createTextNode(`v${data.number} `), badge);
    const reason = $("result-reason");
    reason.textContent = reasonOf(data);
    reason.className = data.status === "failed" ? "bad" : "";
    const metrics = data.metrics || {};
    const list = $("result-metrics");
    const cells = {
      auc: fixed(metrics.auc, 4), log_loss: fixed(metrics.log_loss, 4), accuracy: percent(metrics.accuracy, false),
      sharpe: fixed(metrics.sharpe, 2), total_return: percent(metrics.total_return, true),
    };
    list.querySelectorAll("dd[data-metric]").forEach((dd) => { dd.textContent = cells[dd.dataset.metric] || "–"; });
    list.hidden = data.status === "failed" || data.status === "cancelled";
    result.classList.remove("fresh");
    void result.offsetWidth;
    result.classList.add("fresh");
    if (trainButton) trainButton.disabled = false;
    setTimeout(refresh, RELOAD_MS);
  }

  function refresh() {
    const focus = document.activeElement;
    const typing = focus && focus.form && ["INPUT", "SELECT", "TEXTAREA"].includes(focus.tagName);
    if (typing) {
      const note = $("result-reason");
      if (note && !note.querySelector("a")) {
        const link = document.createElement("a");
        link.href = location.pathname;
        link.textContent = " Reload for the updated versions and charts.";
        note.appendChild(link);
      }
      return;
    }
    location.reload();
  }

  function onDrift(data) {
    if (!ours(data)) return;
    const box = $("drift-chart");
    if (!box) return;
    let note = $("drift-live");
    if (!note) {
      note = document.createElement("p");
      note.id = "drift-live";
      note.className = "notice";
      box.insertBefore(note, box.children[1] || null);
    }
    note.textContent = `New drift check: largest PSI ${fixed(data.max_psi, 3)}${data.is_drift ? " — drift detected" : ""}. Reload to see it on the chart.`;
  }

  async function poll() {
    if (!polling) return;
    try {
      const response = await fetch(cfg.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.ok) {
        const body = await response.json();
        const latest = body.latest;
        if (latest && (latest.version === followed || ACTIVE.includes(latest.status))) {
          if (ACTIVE.includes(latest.status)) onProgress(latest); else onFinished(latest);
          if (!ACTIVE.includes(latest.status)) polling = false;
        }
      }
    } catch (e) { /* offline for a moment: the next poll tries again */ }
    if (polling) setTimeout(poll, POLL_MS);
  }

  function startPolling() {
    if (polling) return;
    polling = true;
    setTimeout(poll, POLL_MS);
  }

  if (window.Live) {
    window.Live.on("ml.progress", onProgress);
    window.Live.on("ml.version", (data) => (ACTIVE.includes(data.status) ? onProgress(data) : onFinished(data)));
    window.Live.on("ml.drift", onDrift);
  }
  if (cfg.active) startPolling();
})();
