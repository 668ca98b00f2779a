// An account's page: a connection test's result arrives as the owner's "account.tested" event
// over the websocket (static/js/live.js); while the page says "Testing…" a poll of the status URL
// is the fallback (an event sent before the socket opened is not replayed). Either way the page's
// content is refreshed in place from the server (same URL: the server decides whether it is still
// testing), without a reload.
(function () {
  "use strict";
  const configEl = document.getElementById("account-config");
  if (!configEl) return;
  let account = JSON.parse(configEl.textContent);
  const POLL_MS = 3000;
  const MAX_POLLS = 40;
  let polls = 0;
  let running = false;
  let again = false;

  function testing() {
    const pending = document.getElementById("test-pending");
    return Boolean(pending && !pending.hidden);
  }

  async function refresh() {
    if (running) { again = true; return; }
    running = true;
    try {
      const response = await fetch(location.href, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } });
      if (!response.ok) return;
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = doc.querySelector("main");
      const freshConfig = doc.getElementById("account-config");
      if (!fresh || !freshConfig) return;
      // The socket's state is this page's, not the fetched copy's ("connecting…").
      const status = document.getElementById("live-status");
      const live = status ? { text: status.textContent, state: status.dataset.state } : null;
      document.querySelector("main").innerHTML = fresh.innerHTML;
      const newStatus = document.getElementById("live-status");
      if (live && newStatus) {
        newStatus.textContent = live.text;
        if (live.state) newStatus.dataset.state = live.state;
      }
      account = JSON.parse(freshConfig.textContent);
    } catch (e) {
      /* offline for a moment: the next event or poll tries again */
    } finally {
      running = false;
      if (again) { again = false; refresh(); }
    }
  }

  function mine(data) { return Number(data.account_id) === Number(account.id); }

  if (window.Live) {
    window.Live.on("account.tested", (data) => { if (mine(data)) refresh(); });
    window.Live.on("account.status", (data) => { if (mine(data)) refresh(); });
  }

  async function poll() {
    if (!testing() || polls++ > MAX_POLLS) return;
    try {
      const response = await fetch(account.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.ok) {
        const data = await response.json();
        if (data.tested_at && data.tested_at !== account.testedAt) await refresh();
      }
    } catch (e) { /* offline for a moment: the next poll tries again */ }
    setTimeout(poll, POLL_MS);
  }
  setTimeout(poll, POLL_MS);
})();
