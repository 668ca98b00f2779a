// A queued or running job's page (backtest, optimisation, walk-forward, Monte Carlo): the
// progress bar follows the owner's "job.progress" events from the websocket (static/js/live.js),
// filtered by kind and id, with a status poll every few seconds as a fallback (an event sent
// before the socket opened is not replayed). When the job finishes the page reloads into its
// results, its error, or its cancelled state.
(function () {
  "use strict";
  const configEl = document.getElementById("job-config");
  if (!configEl) return;
  const job = JSON.parse(configEl.textContent);
  if (job.finished) return;
  const bar = document.getElementById("job-progress");
  const text = document.getElementById("job-progress-text");
  const status = document.getElementById("job-status");
  const detail = document.getElementById("job-detail");
  const box = document.getElementById("job");
  const FINISHED = ["succeeded", "failed", "cancelled"];
  const POLL_MS = 3000;
  let done = false;
  let best = job.progress || 0;

  function label(value) { return value.charAt(0).toUpperCase() + value.slice(1); }

  function apply(data) {
    if (done) return;
    // Events and polls can cross: the bar never moves back while the job runs.
    best = Math.max(best, Number(data.progress) || 0);
    const pct = Math.round(best * 100);
    if (bar) bar.value = pct;
    if (text) text.textContent = `${pct}%`;
    if (status && data.status) status.textContent = label(data.status);
    if (box && data.status) box.dataset.status = data.status;
    if (detail && data.trialsDone !== undefined) detail.textContent = detail.textContent.replace(/^\d+/, String(data.trialsDone));
    if (FINISHED.includes(data.status)) {
      done = true;
      if (bar && data.status === "succeeded") bar.value = 100;
      setTimeout(() => location.reload(), 250);
    }
  }

  if (window.Live) {
    window.Live.on("job.progress", (data) => {
      if (data.kind === job.kind && Number(data.id) === Number(job.id)) apply(data);
    });
  }

  async function poll() {
    if (done) return;
    try {
      const response = await fetch(job.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.ok) apply(await response.json());
    } catch (e) { /* offline for a moment: the next poll tries again */ }
    if (!done) setTimeout(poll, POLL_MS);
  }
  setTimeout(poll, POLL_MS);
})();
