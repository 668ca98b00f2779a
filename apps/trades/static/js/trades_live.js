// Trading pages follow the owner's trade.* events over the websocket (static/js/live.js) and
// refresh their table (#live-table) from the server, debounced, so what is shown is always what
// the database says (the page's filters and pagination are kept: the same URL is fetched).
(function () {
  const root = document.getElementById("live-table");
  if (!root || !window.Live) return;
  let timer = null;
  function refresh() {
    timer = null;
    fetch(location.href, { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" })
      .then((r) => (r.ok ? r.text() : null))
      .then((html) => {
        if (!html) return;
        const doc = new DOMParser().parseFromString(html, "text/html");
        const fresh = doc.getElementById("live-table");
        if (fresh) root.innerHTML = fresh.innerHTML;
        const stamp = document.getElementById("live-updated");
        if (stamp) stamp.textContent = "updated " + new Date().toLocaleTimeString();
      })
      .catch(() => {});
  }
  function later() {
    if (!timer) timer = setTimeout(refresh, 300);
  }
  ["trade.order", "trade.fill", "trade.position", "trade.risk_event", "trade.switch"].forEach((name) =>
    window.Live.on(name, later)
  );
})();
