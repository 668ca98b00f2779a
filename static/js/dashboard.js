Live.on("security_event", (e) => {
  const body = document.getElementById("security-events");
  if (!body || body.querySelector(`[data-event-id="${e.id}"]`)) return;
  const empty = body.querySelector(".empty");
  if (empty) empty.remove();
  const row = document.createElement("tr");
  row.dataset.eventId = e.id;
  row.className = "fresh";
  const when = (e.created_at || "").replace("T", " ").slice(0, 19);
  for (const text of [when, e.action, e.ip || "", e.actor_email || ""]) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
  }
  body.prepend(row);
});
