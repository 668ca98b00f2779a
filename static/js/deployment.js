// The deployment page: candles from /api/v1/deployments/<id>/chart/ with a marker per fill
// (entries as arrows, exits as dots), kept live over the page's websocket: the `candles` stream
// of the deployment's instrument moves the newest bar, and the owner's private events
// (deployment.tick, trade.order, trade.fill, trade.position, deployment.status) update the
// signals, orders, fills, position, P&L and status without a reload.
//
// Plain ES, no build. TradingView Lightweight Charts v5. For tests, #chart carries data-state,
// data-bars, data-markers and data-last-time; each table row carries its id (data-order, ...).
(function () {
  "use strict";
  const LWC = window.LightweightCharts;
  const cfgEl = document.getElementById("deployment-config");
  const el = document.getElementById("chart");
  if (!cfgEl || !el) return;
  const cfg = JSON.parse(cfgEl.textContent);
  const THEME = { bg: "#0f1419", text: "#d9e1e8", grid: "#1c252f", line: "#2a3440", up: "#2ecc71", down: "#ff5c5c" };
  const state = { bars: [], markers: [], markerApi: null, series: null };

  function text(value) { return value === null || value === undefined || value === "" ? "–" : String(value); }
  function num(value, digits) {
    if (value === null || value === undefined || value === "") return "–";
    const n = Number(value);
    return Number.isFinite(n) ? n.toFixed(digits) : "–";
  }
  function qty(value) {
    if (value === null || value === undefined || value === "") return "–";
    const n = Number(value);
    return Number.isFinite(n) ? String(parseFloat(n.toPrecision(12))) : "–";
  }
  function when(value) {
    if (!value) return "–";
    const d = new Date(value);
    return Number.isNaN(d.getTime()) ? String(value) : d.toISOString().replace("T", " ").slice(0, 19);
  }
  function cell(content, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = content;
    return td;
  }
  function upsertRow(tableId, key, value, cells) {
    const body = document.querySelector(`#${tableId} tbody`);
    if (!body) return;
    body.querySelectorAll("tr.empty").forEach((row) => row.remove());
    let row = body.querySelector(`tr[data-${key}="${value}"]`);
    const fresh = !row;
    if (!row) row = document.createElement("tr");
    row.setAttribute(`data-${key}`, String(value));
    row.replaceChildren(...cells);
    if (fresh) { row.classList.add("fresh"); body.prepend(row); }
  }

  // --- the chart -------------------------------------------------------------------------------
  function makeChart() {
    if (!LWC) return null;
    const tick = cfg.tickSize || 0.01;
    const precision = Math.max(0, Math.min(10, Math.round(-Math.log10(tick))));
    const chart = LWC.createChart(el, {
      autoSize: true,
      layout: { background: { type: "solid", color: THEME.bg }, textColor: THEME.text, attributionLogo: true },
      grid: { vertLines: { color: THEME.grid }, horzLines: { color: THEME.grid } },
      rightPriceScale: { borderColor: THEME.line },
      timeScale: { borderColor: THEME.line, timeVisible: true, secondsVisible: false },
    });
    state.series = chart.addSeries(LWC.CandlestickSeries, {
      upColor: THEME.up, downColor: THEME.down, wickUpColor: THEME.up, wickDownColor: THEME.down, borderVisible: false,
      priceFormat: { type: "price", precision: precision, minMove: tick },
    });
    state.markerApi = LWC.createSeriesMarkers(state.series, []);
    return chart;
  }
  const chart = makeChart();

  function markerOf(m) {
    const buy = m.side === "buy";
    if (m.kind === "exit") {
      return { time: m.t, position: buy ? "belowBar" : "aboveBar", shape: "circle", color: buy ? THEME.up : THEME.down, text: m.leg && m.leg !== "exit" ? m.leg : "exit" };
    }
    return { time: m.t, position: buy ? "belowBar" : "aboveBar", shape: buy ? "arrowUp" : "arrowDown", color: buy ? THEME.up : THEME.down, text: buy ? "buy" : "sell" };
  }
  function drawMarkers() {
    if (!state.markerApi) return;
    const first = state.bars.length ? state.bars[0].t : 0;
    const shown = state.markers.filter((m) => m.t >= first).map(markerOf).sort((a, b) => a.time - b.time);
    state.markerApi.setMarkers(shown);
    el.dataset.markers = String(shown.length);
  }
  function candleOf(b) { return { time: b.t, open: b.o, high: b.h, low: b.l, close: b.c }; }

  async function loadChart() {
    const url = new URL(cfg.chartUrl, location.origin);
    if (cfg.instrument) url.searchParams.set("instrument", String(cfg.instrument));
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    const body = await response.json();
    if (!response.ok) throw new Error((body.error && body.error.message) || `HTTP ${response.status}`);
    state.bars = body.candles || [];
    state.markers = body.markers || [];
    if (state.series) {
      state.series.setData(state.bars.map(candleOf));
      drawMarkers();
      chart.timeScale().fitContent();
    }
    el.dataset.bars = String(state.bars.length);
    el.dataset.lastTime = state.bars.length ? String(state.bars[state.bars.length - 1].t) : "";
    el.dataset.state = "ready";
  }

  function onCandle(data) {
    if (Number(data.instrument) !== Number(cfg.instrument) || data.timeframe !== cfg.timeframe) return;
    const t = typeof data.t === "number" ? data.t : Math.floor(Date.parse(data.ts) / 1000);
    const last = state.bars[state.bars.length - 1];
    if (!Number.isFinite(t) || (last && t < last.t)) return;
    const bar = { t: t, o: +data.open, h: +data.high, l: +data.low, c: +data.close, v: +data.volume };
    if (last && last.t === t) state.bars[state.bars.length - 1] = bar;
    else state.bars.push(bar);
    if (state.series) state.series.update(candleOf(bar));
    el.dataset.bars = String(state.bars.length);
    el.dataset.lastTime = String(t);
  }

  // --- private events --------------------------------------------------------------------------
  function mine(data) { return Number(data.deployment_id || data.deployment) === Number(cfg.deployment); }

  const ACTIONS = { enter_long: "Enter long", exit_long: "Exit long", enter_short: "Enter short", exit_short: "Exit short", stop: "Protective exit", none: "No action" };
  function onTick(data) {
    if (!mine(data)) return;
    if (data.action && data.action !== "none") {
      const refusal = data.details && data.details.refusal;
      const note = cell(refusal ? `refused: ${refusal.message}` : "", "small" + (refusal ? " bad" : ""));
      upsertRow("signals", "bar", `${data.instrument}-${data.bar_ts}`, [
        cell(when(data.bar_ts).slice(0, 16)), cell(cfg.symbol), cell(ACTIONS[data.action] || data.action, `action-${data.action}`),
        cell(text(data.details && data.details.close), "num"), note,
      ]);
    }
    document.getElementById("chart").dataset.lastTick = String(data.bar_ts);
  }
  function onOrder(data) {
    if (!mine(data)) return;
    const status = cell(data.status + (data.status_reason ? ` — ${data.status_reason}` : ""), "order-status");
    status.dataset.status = data.status;
    upsertRow("orders", "order", data.id, [
      cell(when(data.created_at)), cell(data.client_order_id), cell(data.leg), cell(data.side), cell(data.type),
      cell(qty(data.quantity), "num"), cell(qty(data.filled_quantity), "num"), cell(num(data.average_price, 4), "num"), status,
    ]);
  }
  function onFill(data) {
    if (!mine(data)) return;
    upsertRow("fills", "fill", data.id, [
      cell(when(data.filled_at)), cell(data.side), cell(qty(data.quantity), "num"), cell(qty(data.price), "num"),
      cell(num(data.fee, 4), "num"), cell(num(data.slippage_bps, 2), "num"), cell(num(data.realized_pnl, 2), "num"),
    ]);
    // The marker: reload the chart's markers (the server knows the fill's bar and leg).
    loadChart().catch(() => {});
    refreshPnl();
  }
  function onPosition(data) {
    if (!mine(data)) return;
    upsertRow("positions", "instrument", data.instrument_id, [
      cell(data.symbol), cell(qty(data.quantity), "num"), cell(num(data.average_price, 4), "num"),
      cell(num(data.stop_price, 4), "num"), cell(num(data.target_price, 4), "num"), cell(num(data.realized_pnl, 2), "num"),
    ]);
    refreshPnl();
  }
  function onStatus(data) {
    if (!mine(data)) return;
    const badge = document.getElementById("deployment-status");
    if (badge) { badge.dataset.status = data.status; badge.textContent = data.status_display || data.status; }
    const reason = document.getElementById("status-reason");
    if (reason) { reason.textContent = data.reason || ""; reason.hidden = !data.reason; }
    if (data.status !== cfg.status) {
      cfg.status = data.status;
      // The buttons depend on the state: the server renders them.
      const actions = document.getElementById("deployment-actions");
      if (actions) actions.dataset.stale = "1";
      setTimeout(() => location.reload(), 400);
    }
  }

  let pnlTimer = null;
  function refreshPnl() {
    clearTimeout(pnlTimer);
    pnlTimer = setTimeout(async () => {
      const response = await fetch(cfg.equityUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const body = await response.json();
      const s = body.summary || {};
      const set = (id, value, digits) => { const node = document.getElementById(id); if (node) node.textContent = num(value, digits); };
      set("pnl-equity", s.equity, 2); set("pnl-net", s.net_pnl, 2); set("pnl-realized", s.realized_pnl, 2);
      set("pnl-unrealized", s.unrealized_pnl, 2); set("pnl-fees", s.fees, 2);
      const fills = document.getElementById("pnl-fills");
      if (fills) fills.textContent = text(s.fills);
    }, 300);
  }

  if (window.Live) {
    window.Live.on("candle", onCandle);
    window.Live.on("deployment.tick", onTick);
    window.Live.on("trade.order", onOrder);
    window.Live.on("trade.fill", onFill);
    window.Live.on("trade.position", onPosition);
    window.Live.on("deployment.status", onStatus);
    window.Live.on("subscribed", () => { el.dataset.subscribed = "confirmed"; });
    if (cfg.instrument) window.Live.subscribe({ stream: "candles", instrument: cfg.instrument, timeframe: cfg.timeframe });
  }
  loadChart().catch((err) => { el.dataset.state = "error"; el.title = err.message; });
})();
