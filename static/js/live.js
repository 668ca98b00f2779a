// One websocket per page to /ws/, reconnecting with backoff. Pages listen with
// Live.on("event_name", fn) and join public streams with Live.subscribe({stream, ...}), which is
// sent again after every reconnect. Private events are only ever this user's own.
(function () {
  const handlers = {};
  const subscriptions = [];
  let socket = null;
  let delay = 500;
  function setStatus(state, text) {
    const el = document.getElementById("live-status");
    if (el) { el.dataset.state = state; el.textContent = text; }
  }
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/ws/`);
    socket.onopen = () => {
      delay = 500;
      setStatus("live", "live");
      subscriptions.forEach((msg) => socket.send(JSON.stringify(msg)));
    };
    socket.onmessage = (msg) => {
      const { event, data } = JSON.parse(msg.data);
      (handlers[event] || []).forEach((fn) => fn(data));
      (handlers["*"] || []).forEach((fn) => fn(event, data));
    };
    socket.onclose = (e) => {
      if (e.code === 4401 || e.code === 4403) { setStatus("off", "signed out"); return; }
      setStatus("connecting", "reconnecting…");
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }
  window.Live = {
    on(event, fn) { (handlers[event] = handlers[event] || []).push(fn); },
    subscribe(params) {
      const msg = { ...params, type: "subscribe" };
      subscriptions.push(msg);
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(msg));
    },
  };
  document.addEventListener("DOMContentLoaded", connect);
})();
