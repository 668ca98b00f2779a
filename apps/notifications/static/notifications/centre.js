// The notification centre: new notifications arrive at the top over the websocket (Live), and
// the unread count follows reads made in other tabs.
(function () {
  const list = document.getElementById("notifications");
  const unreadLabel = document.getElementById("centre-unread");
  function csrf() {
    const m = document.cookie.match(/csrftoken=([^;]+)/);
    return m ? m[1] : "";
  }
  function setUnread(n) {
    if (unreadLabel && typeof n === "number") unreadLabel.textContent = `${n} unread`;
  }
  function item(n) {
    const li = document.createElement("li");
    li.className = "notification unread";
    li.dataset.id = n.id;
    li.dataset.event = n.event;
    const head = document.createElement("div");
    head.className = "n-head";
    const ev = document.createElement("span");
    ev.className = "n-event";
    ev.textContent = n.event_display;
    const title = document.createElement("strong");
    title.className = "n-title";
    title.textContent = n.title;
    const when = document.createElement("time");
    when.className = "muted";
    when.textContent = (n.created_at || "").replace("T", " ").slice(0, 19) + " UTC";
    head.append(ev, " ", title, " ", when);
    li.append(head);
    if (n.body) {
      const body = document.createElement("div");
      body.className = "n-body";
      body.textContent = n.body;
      li.append(body);
    }
    const form = document.createElement("form");
    form.method = "post";
    form.action = `/notifications/${n.id}/read/`;
    form.className = "inline";
    const token = document.createElement("input");
    token.type = "hidden";
    token.name = "csrfmiddlewaretoken";
    token.value = csrf();
    const button = document.createElement("button");
    button.className = "link";
    button.type = "submit";
    button.textContent = "Mark read";
    form.append(token, button);
    li.append(form);
    return li;
  }
  if (!window.Live || !list) return;
  Live.on("notification.new", (data) => {
    const n = data.notification;
    if (list.querySelector(`[data-id="${n.id}"]`)) return;
    const empty = list.querySelector(".empty");
    if (empty) empty.remove();
    list.prepend(item(n));
    setUnread(data.unread);
  });
  Live.on("notification.read", (data) => {
    (data.ids || []).forEach((id) => {
      const li = list.querySelector(`[data-id="${id}"]`);
      if (li) {
        li.classList.remove("unread");
        const form = li.querySelector("form");
        if (form) form.remove();
      }
    });
    setUnread(data.unread);
  });
})();
