// An account's page: after "Test connection" the result arrives as the owner's "account.tested"
// event over the websocket (static/js/live.js); a poll of the status URL is the fallback (an
// event sent before the socket opened is not replayed). Either way the page reloads once the
// test time changes.
(function () {
  "use strict";
  const configEl = document.getElementById("account-config");
  if (!configEl) return;
  const account = JSON.parse(configEl.textContent);
  const pending = document.getElementById("test-pending");
  const POLL_MS = 3000;
  const MAX_POLLS = 40;
  let done = false;

  function reload() {
    if (done) return;
    done = true;
    location.replace(location.pathname);
  }

  if (window.Live) {
    window.Live.on("account.tested", (data) => { if (Number(data.account_id) === Number(account.id)) reload(); });
    window.Live.on("account.status", (data) => { if (Number(data.account_id) === Number(account.id)) reload(); });
  }

  if (!pending || pending.hidden) return;
  let polls = 0;
  async function poll() {
    if (done || polls++ > MAX_POLLS) return;
    try {
      const response = await fetch(account.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.ok) {
        const data = await response.json();
        if (data.tested_at && data.tested_at !== account.testedAt) { reload(); return; }
      }
    } catch (e) { /* offline for a moment: the next poll tries again */ }
    setTimeout(poll, POLL_MS);
  }
  setTimeout(poll, POLL_MS);
})();
