// A subscription's page follows the follower's live events over the websocket (static/js/live.js):
// `copy.trade` (a copy of the leader's fill, written by the fan-out) and the trades app's
// `trade.order` / `trade.fill` / `trade.position` of this copy book's orders. Each refreshes the
// live sections (#live-sections: P&L, copied trades, positions, fills) from the server, debounced,
// so what is shown is always what the database says; `copy.subscription` refreshes the whole page
// state (status, actions).
(function () {
  const configEl = document.getElementById("subscription-config");
  const root = document.getElementById("live-sections");
  if (!configEl || !root || !window.Live) return;
  const config = JSON.parse(configEl.textContent);
  let timer = null;
  let full = false;
  function refresh() {
    timer = null;
    const whole = full;
    full = false;
    fetch(location.href, { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" })
      .then((r) => (r.ok ? r.text() : null))
      .then((html) => {
        if (!html) return;
        const doc = new DOMParser().parseFromString(html, "text/html");
        const ids = whole ? ["live-sections", "subscription-actions", "subscription-terms", "status-reason", "fee-statement"] : ["live-sections"];
        ids.forEach((id) => {
          const fresh = doc.getElementById(id);
          const here = document.getElementById(id);
          if (fresh && here) { here.innerHTML = fresh.innerHTML; here.hidden = fresh.hidden; }
        });
        const badge = doc.getElementById("subscription-status");
        const mine = document.getElementById("subscription-status");
        if (whole && badge && mine) { mine.textContent = badge.textContent; mine.dataset.status = badge.dataset.status; }
        const stamp = document.getElementById("live-updated");
        if (stamp) stamp.textContent = "updated " + new Date().toLocaleTimeString();
      })
      .catch(() => {});
  }
  function later(whole) {
    if (whole) full = true;
    if (!timer) timer = setTimeout(refresh, 250);
  }
  window.Live.on("copy.trade", (data) => { if (data && data.subscription_id === config.subscription) later(false); });
  window.Live.on("copy.subscription", (data) => { if (data && data.id === config.subscription) later(true); });
  ["trade.order", "trade.fill", "trade.position"].forEach((name) =>
    window.Live.on(name, (data) => { if (data && data.deployment_id === config.deployment) later(false); })
  );
})();
