// The deployment page's webhook section: each attempt on the deployment's TradingView webhook
// arrives as a private `webhook.signal` event and is added to #webhook-attempts (the orders it
// placed arrive as `trade.order` events, which static/js/deployment.js shows).
(function () {
  "use strict";
  const section = document.getElementById("webhook");
  if (!section || !window.Live) return;
  const deployment = Number(section.dataset.deployment);
  function cell(content, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = content === null || content === undefined ? "" : String(content);
    return td;
  }
  function when(value) {
    const d = new Date(value);
    return Number.isNaN(d.getTime()) ? String(value || "") : d.toISOString().replace("T", " ").slice(0, 19);
  }
  window.Live.on("webhook.signal", function (data) {
    if (Number(data.deployment_id) !== deployment) return;
    const body = document.querySelector("#webhook-attempts tbody");
    if (!body) return;
    body.querySelectorAll("tr.empty").forEach((row) => row.remove());
    let row = body.querySelector(`tr[data-webhook-signal="${data.id}"]`);
    const fresh = !row;
    if (!row) row = document.createElement("tr");
    row.dataset.webhookSignal = String(data.id);
    row.dataset.status = data.status;
    const code = document.createElement("code");
    code.textContent = data.nonce || "";
    const nonce = cell("");
    nonce.append(code);
    const orders = cell("");
    (data.order_ids || []).forEach((id) => {
      const ref = document.createElement("span");
      ref.dataset.orderRef = String(id);
      ref.textContent = `#${id} `;
      orders.append(ref);
    });
    row.replaceChildren(
      cell(when(data.created_at)), cell(`${data.status}: ${data.code}`, data.status === "refused" ? "bad" : ""),
      cell(data.http_status, "num"), cell(data.action), cell(data.symbol), nonce, orders, cell(data.message, "small"),
    );
    if (fresh) { row.classList.add("fresh"); body.prepend(row); }
  });
})();
