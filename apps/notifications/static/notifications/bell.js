// The bell in the top bar: its unread count follows notification.new / notification.read live.
// Uses the page's Live socket when the page has one (static/js/live.js), else opens its own.
(function () {
  function setCount(n) {
    const el = document.getElementById("bell-count");
    if (!el || typeof n !== "number") return;
    el.textContent = String(n);
    el.dataset.count = String(n);
    el.hidden = n === 0;
    const bell = document.getElementById("nav-bell");
    if (bell) bell.setAttribute("aria-label", `Notifications, ${n} unread`);
  }
  function handle(event, data) {
    if ((event === "notification.new" || event === "notification.read") && data) setCount(data.unread);
  }
  window.NotificationBell = { setCount };
  if (window.Live) {
    window.Live.on("*", handle);
    return;
  }
  let delay = 1000;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/`);
    socket.onopen = () => { delay = 1000; };
    socket.onmessage = (msg) => {
      try { const { event, data } = JSON.parse(msg.data); handle(event, data); } catch (e) { /* not ours */ }
    };
    socket.onclose = (e) => {
      if (e.code === 4401 || e.code === 4403) return;
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
})();
