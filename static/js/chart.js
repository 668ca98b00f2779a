// The chart page: candles + volume from /api/v1/instruments/<id>/candles/, indicators computed by
// the server (overlays on the price, oscillators in panes below), structure objects from
// /structure/ (S/R and Fibonacci as price lines, trendlines as line series, supply/demand zones
// as shaded boxes), and the newest bar kept live over the page's websocket.
//
// Plain ES, no build. TradingView Lightweight Charts v5 (static/vendor/lightweight-charts).
// For tests and tools, #chart carries data-state, data-bars, data-last-close, data-last-time,
// data-indicators (specs drawn), data-structure (objects drawn) and data-subscribed.
(function () {
  "use strict";
  const LWC = window.LightweightCharts;
  const configEl = document.getElementById("chart-config");
  const el = document.getElementById("chart");
  if (!LWC || !configEl || !el) return;
  const cfg = JSON.parse(configEl.textContent);
  if (!cfg.timeframe) return;

  const THEME = { bg: "#0f1419", text: "#d9e1e8", grid: "#1c252f", line: "#2a3440", up: "#2ecc71", down: "#ff5c5c" };
  const PALETTE = ["#3fa7ff", "#f5a623", "#c792ea", "#4dd0e1", "#ff8a65", "#aed581", "#f06292", "#ffd54f"];
  const LEVELS = { rsi: [70, 30], stoch: [80, 20], mfi: [80, 20], cci: [100, -100], willr: [-20, -80] };
  const STORE = { indicators: "tp.chart.indicators", layers: "tp.chart.layers" };
  const DEFAULT_INDICATORS = ["ema:20", "bbands:20:2", "rsi:14"];
  const DEFAULT_LAYERS = ["sr", "trendlines", "zones"];
  const MAIN_HEIGHT = 520;
  const PANE_HEIGHT = 150;
  const SR_LINES_PER_SIDE = 4;

  const state = {
    bars: [],
    indicators: load(STORE.indicators, DEFAULT_INDICATORS),
    layers: load(STORE.layers, DEFAULT_LAYERS),
    indicatorSeries: [],
    priceLines: [],
    lineSeries: [],
    structureCount: 0,
    refreshTimer: null,
  };

  function load(key, fallback) {
    try {
      const value = JSON.parse(localStorage.getItem(key));
      return Array.isArray(value) ? value : fallback.slice();
    } catch (e) {
      return fallback.slice();
    }
  }
  function save(key, value) {
    try { localStorage.setItem(key, JSON.stringify(value)); } catch (e) { /* private mode */ }
  }

  // --- the chart -------------------------------------------------------------------------------
  const tick = cfg.tickSize || 0.01;
  const precision = Math.max(0, Math.min(10, Math.round(-Math.log10(tick))));
  const chart = LWC.createChart(el, {
    autoSize: true,
    layout: {
      background: { type: "solid", color: THEME.bg },
      textColor: THEME.text,
      attributionLogo: true,
      panes: { separatorColor: THEME.line, enableResize: true },
    },
    grid: { vertLines: { color: THEME.grid }, horzLines: { color: THEME.grid } },
    rightPriceScale: { borderColor: THEME.line },
    timeScale: { borderColor: THEME.line, timeVisible: true, secondsVisible: false },
    crosshair: { mode: LWC.CrosshairMode.Normal },
  });
  const candles = chart.addSeries(LWC.CandlestickSeries, {
    upColor: THEME.up, downColor: THEME.down, wickUpColor: THEME.up, wickDownColor: THEME.down, borderVisible: false,
    priceFormat: { type: "price", precision: precision, minMove: tick },
  });
  candles.priceScale().applyOptions({ scaleMargins: { top: 0.06, bottom: 0.22 } });
  const volume = chart.addSeries(LWC.HistogramSeries, {
    priceScaleId: "volume", priceFormat: { type: "volume" }, lastValueVisible: false, priceLineVisible: false,
  });
  volume.priceScale().applyOptions({ scaleMargins: { top: 0.82, bottom: 0 } });
  const zones = new ZonesPrimitive();
  candles.attachPrimitive(zones);

  function candleOf(b) { return { time: b.t, open: b.o, high: b.h, low: b.l, close: b.c }; }
  function volumeOf(b) { return { time: b.t, value: b.v, color: b.c >= b.o ? "#2ecc7155" : "#ff5c5c55" }; }

  function publish() {
    const last = state.bars[state.bars.length - 1];
    el.dataset.bars = String(state.bars.length);
    el.dataset.lastClose = last ? String(last.c) : "";
    el.dataset.lastTime = last ? String(last.t) : "";
    el.dataset.indicators = state.indicatorSeries.length ? drawnSpecs.join(",") : "";
    el.dataset.structure = String(state.structureCount);
  }

  function showError(message) {
    const box = document.getElementById("chart-error");
    if (!box) return;
    box.hidden = !message;
    box.textContent = message || "";
  }

  async function api(url, params) {
    const target = new URL(url, location.origin);
    Object.entries(params).forEach(([k, v]) => { if (v !== "" && v != null) target.searchParams.set(k, v); });
    const response = await fetch(target, { credentials: "same-origin", headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const err = new Error((body.error && body.error.message) || `HTTP ${response.status}`);
      err.fields = body.error && body.error.fields;
      throw err;
    }
    return body;
  }

  // --- candles and indicators ----------------------------------------------------------------
  let drawnSpecs = [];

  async function loadCandles({ keepView } = { keepView: false }) {
    const body = await api(cfg.candlesUrl, {
      timeframe: cfg.timeframe, limit: cfg.limit, indicators: state.indicators.join(","),
    });
    const last = state.bars[state.bars.length - 1];
    const fresh = body.candles;
    const newLast = fresh[fresh.length - 1];
    if (!keepView || !last || !newLast || newLast.t !== last.t || fresh.length !== state.bars.length) {
      state.bars = fresh;
      candles.setData(fresh.map(candleOf));
      volume.setData(fresh.map(volumeOf));
    }
    drawIndicators(body);
    el.dataset.state = "ready";
    publish();
  }

  function clearIndicators() {
    state.indicatorSeries.forEach((s) => chart.removeSeries(s));
    state.indicatorSeries = [];
    while (chart.panes().length > 1) chart.removePane(chart.panes().length - 1);
    drawnSpecs = [];
  }

  function points(values) {
    return bodyTimes.map((t, i) => (values[i] == null ? { time: t } : { time: t, value: values[i] }));
  }
  let bodyTimes = [];

  function addLine(pane, values, options) {
    const series = chart.addSeries(LWC.LineSeries, Object.assign({
      lineWidth: 1.5, priceLineVisible: false, lastValueVisible: false, crosshairMarkerVisible: false,
    }, options), pane);
    series.setData(points(values));
    state.indicatorSeries.push(series);
    return series;
  }

  function drawIndicators(body) {
    clearIndicators();
    bodyTimes = body.candles.map((b) => b.t);
    let color = 0;
    let pane = 0;
    for (const [spec, result] of Object.entries(body.indicators)) {
      const c = PALETTE[color++ % PALETTE.length];
      const cols = result.series;
      const title = spec;
      if (result.pane === "price") {
        drawOverlay(result.name, cols, c, title);
      } else {
        pane += 1;
        drawPane(result.name, cols, c, title, pane);
      }
      drawnSpecs.push(spec);
    }
    const panes = chart.panes();
    el.style.height = `${MAIN_HEIGHT + PANE_HEIGHT * (panes.length - 1)}px`;
    panes.forEach((p, i) => p.setStretchFactor(i === 0 ? MAIN_HEIGHT / PANE_HEIGHT : 1));
  }

  function drawOverlay(name, cols, color, title) {
    if (cols.upper && cols.lower) { // bands: bbands, donchian, keltner
      addLine(0, cols.upper, { color: color, lineWidth: 1, title: title });
      if (cols.middle) addLine(0, cols.middle, { color: color, lineWidth: 1, lineStyle: LWC.LineStyle.Dashed });
      addLine(0, cols.lower, { color: color, lineWidth: 1 });
    } else if (name === "supertrend") {
      const dir = cols.direction;
      addLine(0, cols.supertrend.map((v, i) => (dir[i] > 0 ? v : null)), { color: THEME.up, title: title });
      addLine(0, cols.supertrend.map((v, i) => (dir[i] < 0 ? v : null)), { color: THEME.down });
    } else if (name === "ichimoku") {
      addLine(0, cols.tenkan, { color: "#3fa7ff", lineWidth: 1, title: title });
      addLine(0, cols.kijun, { color: "#ff8a65", lineWidth: 1 });
      addLine(0, cols.senkou_a, { color: "#2ecc7199", lineWidth: 1 });
      addLine(0, cols.senkou_b, { color: "#ff5c5c99", lineWidth: 1 });
      addLine(0, cols.chikou, { color: "#c792ea88", lineWidth: 1 });
    } else {
      addLine(0, cols.value, { color: color, title: title });
    }
  }

  function drawPane(name, cols, color, title, pane) {
    if (name === "macd") {
      const hist = chart.addSeries(LWC.HistogramSeries, { priceLineVisible: false, lastValueVisible: false }, pane);
      hist.setData(bodyTimes.map((t, i) => (cols.hist[i] == null ? { time: t }
        : { time: t, value: cols.hist[i], color: cols.hist[i] >= 0 ? "#2ecc7188" : "#ff5c5c88" })));
      state.indicatorSeries.push(hist);
      addLine(pane, cols.macd, { color: color, title: title, lastValueVisible: true });
      addLine(pane, cols.signal, { color: "#f5a623" });
      return;
    }
    if (name === "stoch") {
      const k = addLine(pane, cols.k, { color: color, title: title, lastValueVisible: true });
      addLine(pane, cols.d, { color: "#f5a623" });
      guides(k, name);
      return;
    }
    const series = addLine(pane, cols.value, { color: color, title: title, lastValueVisible: true });
    guides(series, name);
  }

  function guides(series, name) {
    (LEVELS[name] || []).forEach((price) => series.createPriceLine({
      price: price, color: "#8a99a866", lineWidth: 1, lineStyle: LWC.LineStyle.Dotted, axisLabelVisible: false,
    }));
  }

  // --- structure -------------------------------------------------------------------------------
  function clearStructure() {
    state.priceLines.forEach((line) => candles.removePriceLine(line));
    state.priceLines = [];
    state.lineSeries.forEach((s) => chart.removeSeries(s));
    state.lineSeries = [];
    zones.setZones([]);
    state.structureCount = 0;
    const list = document.getElementById("structure-list");
    if (list) list.replaceChildren();
  }

  async function loadStructure() {
    const kinds = state.layers.slice();
    if (!kinds.length || !state.bars.length) { clearStructure(); publish(); return; }
    const bars = Math.max(50, Math.min(cfg.structureBars, state.bars.length));
    const body = await api(cfg.structureUrl, { timeframe: cfg.timeframe, kinds: kinds.join(","), bars: bars });
    clearStructure();
    const first = state.bars.length ? state.bars[0].t : 0;
    nearest(body.sr || [], SR_LINES_PER_SIDE).forEach((level) => addPriceLine(level.price, level.kind === "support" ? THEME.up : THEME.down,
      Math.min(4, 1 + Math.floor(level.strength / 2)), LWC.LineStyle.Solid,
      `${level.kind === "support" ? "S" : "R"} ${level.strength.toFixed(1)}`));
    (body.fib || []).forEach((level) => addPriceLine(level.price, "#c792ea", 1, LWC.LineStyle.Dashed,
      `Fib ${level.name === "fib_0" ? "0" : level.name === "fib_100" ? "1" : level.ratio}`));
    (body.trendlines || []).forEach((line) => {
      if (line.start_at >= line.end_at || line.start_at < first) return;
      const series = chart.addSeries(LWC.LineSeries, {
        color: line.kind === "support" ? THEME.up : THEME.down, lineWidth: 2, lineStyle: LWC.LineStyle.Solid,
        priceLineVisible: false, lastValueVisible: false, crosshairMarkerVisible: false,
        autoscaleInfoProvider: () => null, // a line from far back must not squash the candles
      }, 0);
      series.setData([{ time: line.start_at, value: line.start_price }, { time: line.end_at, value: line.end_price }]);
      state.lineSeries.push(series);
      state.structureCount += 1;
    });
    zones.setZones(body.zones || []);
    state.structureCount += (body.zones || []).length;
    listStructure(body);
    publish();
  }

  // The levels closest to the last close on each side (the list below the chart shows all).
  function nearest(levels, perSide) {
    const last = state.bars[state.bars.length - 1];
    if (!last) return levels;
    const below = levels.filter((l) => l.price <= last.c).sort((a, b) => b.price - a.price).slice(0, perSide);
    const above = levels.filter((l) => l.price > last.c).sort((a, b) => a.price - b.price).slice(0, perSide);
    return below.concat(above);
  }

  function addPriceLine(price, color, width, style, title) {
    state.priceLines.push(candles.createPriceLine({
      price: price, color: color, lineWidth: width, lineStyle: style, axisLabelVisible: true, title: title,
    }));
    state.structureCount += 1;
  }

  function listStructure(body) {
    const list = document.getElementById("structure-list");
    if (!list) return;
    const fmt = (p) => Number(p).toFixed(precision);
    const groups = [
      ["Support / resistance", body.sr, (l) => [l.kind, `${fmt(l.price)}  strength ${l.strength.toFixed(1)} (${l.touches} touches)`]],
      ["Trendlines", body.trendlines, (l) => [l.kind, `${l.kind} now ${fmt(l.end_price)}  strength ${l.strength.toFixed(1)}`]],
      ["Supply / demand", body.zones, (z) => [z.kind, `${z.kind} ${fmt(z.low)}–${fmt(z.high)}${z.fresh ? "  fresh" : ""}`]],
      ["Fibonacci", body.fib, (f) => ["", `${f.name.replace("fib_", "")}  ${fmt(f.price)}`]],
    ];
    for (const [heading, items, describe] of groups) {
      if (!items) continue;
      const section = document.createElement("div");
      const h = document.createElement("h3");
      h.textContent = `${heading} (${items.length})`;
      const ul = document.createElement("ul");
      items.forEach((item) => {
        const [kind, text] = describe(item);
        const li = document.createElement("li");
        li.className = kind;
        li.textContent = text;
        ul.appendChild(li);
      });
      section.append(h, ul);
      list.appendChild(section);
    }
  }

  // Supply/demand zones: boxes from the zone's first base candle to the right edge of the chart.
  function ZonesPrimitive() {
    this.zones = [];
    this.chart = null;
    this.series = null;
    this.requestUpdate = null;
    const self = this;
    const renderer = {
      draw: function (target) {
        if (!self.chart || !self.series || !self.zones.length) return;
        const timeScale = self.chart.timeScale();
        target.useBitmapCoordinateSpace(function (scope) {
          const ctx = scope.context;
          const hr = scope.horizontalPixelRatio;
          const vr = scope.verticalPixelRatio;
          self.zones.forEach(function (zone) {
            let x = timeScale.timeToCoordinate(zone.start_at);
            if (x === null) {
              const range = timeScale.getVisibleRange();
              if (!range || zone.start_at > range.to) return;
              x = 0;
            }
            const top = self.series.priceToCoordinate(zone.high);
            const bottom = self.series.priceToCoordinate(zone.low);
            if (top === null || bottom === null) return;
            const demand = zone.kind === "demand";
            const left = Math.max(0, Math.round(x * hr));
            const y = Math.round(top * vr);
            const h = Math.max(1, Math.round((bottom - top) * vr));
            ctx.fillStyle = demand ? "rgba(46, 204, 113, 0.13)" : "rgba(255, 92, 92, 0.13)";
            ctx.fillRect(left, y, scope.bitmapSize.width - left, h);
            ctx.strokeStyle = demand ? "rgba(46, 204, 113, 0.5)" : "rgba(255, 92, 92, 0.5)";
            ctx.lineWidth = Math.max(1, Math.round(hr));
            ctx.strokeRect(left, y, scope.bitmapSize.width - left, h);
          });
        });
      },
    };
    const view = { zOrder: () => "bottom", renderer: () => renderer };
    this.paneViews = () => [view];
  }
  ZonesPrimitive.prototype.attached = function (params) {
    this.chart = params.chart;
    this.series = params.series;
    this.requestUpdate = params.requestUpdate;
  };
  ZonesPrimitive.prototype.detached = function () { this.chart = null; this.series = null; };
  ZonesPrimitive.prototype.updateAllViews = function () {};
  ZonesPrimitive.prototype.setZones = function (items) {
    this.zones = items;
    if (this.requestUpdate) this.requestUpdate();
  };

  // --- legend ----------------------------------------------------------------------------------
  const legend = document.getElementById("chart-legend");
  function showLegend(bar) {
    if (!legend || !bar) return;
    const when = new Date(bar.t * 1000).toISOString().replace("T", " ").slice(0, 16);
    const f = (v) => Number(v).toFixed(precision);
    legend.innerHTML = "";
    const parts = [["", `${cfg.symbol} ${cfg.timeframe} ${when} UTC`], ["O", f(bar.o)], ["H", f(bar.h)],
      ["L", f(bar.l)], ["C", f(bar.c)], ["V", Number(bar.v).toLocaleString()]];
    parts.forEach(([label, value]) => {
      const span = document.createElement("span");
      span.textContent = label ? ` ${label} ` : "";
      const b = document.createElement("b");
      b.textContent = value;
      span.appendChild(b);
      legend.appendChild(span);
    });
  }
  chart.subscribeCrosshairMove((param) => {
    const data = param.time !== undefined ? param.seriesData.get(candles) : null;
    if (!data) { showLegend(state.bars[state.bars.length - 1]); return; }
    const bar = state.bars.find((b) => b.t === param.time);
    showLegend(bar || { t: param.time, o: data.open, h: data.high, l: data.low, c: data.close, v: 0 });
  });

  // --- controls --------------------------------------------------------------------------------
  const presets = new Set(Array.from(document.querySelectorAll(".indicator-toggle")).map((i) => i.value));

  function syncControls() {
    document.querySelectorAll(".indicator-toggle").forEach((box) => { box.checked = state.indicators.includes(box.value); });
    document.querySelectorAll(".structure-toggle").forEach((box) => { box.checked = state.layers.includes(box.value); });
    const chips = document.getElementById("indicator-chips");
    if (!chips) return;
    chips.replaceChildren();
    state.indicators.filter((s) => !presets.has(s)).forEach((spec) => {
      const chip = document.createElement("span");
      chip.className = "chip";
      chip.textContent = spec;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "×";
      remove.title = `Remove ${spec}`;
      remove.addEventListener("click", () => setIndicators(state.indicators.filter((s) => s !== spec)));
      chip.appendChild(remove);
      chips.appendChild(chip);
    });
  }

  async function setIndicators(next) {
    const previous = state.indicators;
    state.indicators = Array.from(new Set(next));
    syncControls();
    try {
      await loadCandles({ keepView: true });
      save(STORE.indicators, state.indicators);
      showError("");
    } catch (err) {
      state.indicators = previous;
      syncControls();
      showError(err.message);
    }
  }

  document.querySelectorAll(".indicator-toggle").forEach((box) => box.addEventListener("change", () => {
    setIndicators(box.checked ? state.indicators.concat([box.value]) : state.indicators.filter((s) => s !== box.value));
  }));
  document.querySelectorAll(".structure-toggle").forEach((box) => box.addEventListener("change", () => {
    state.layers = box.checked ? state.layers.concat([box.value]) : state.layers.filter((k) => k !== box.value);
    save(STORE.layers, state.layers);
    loadStructure().catch((err) => showError(err.message));
  }));
  const custom = document.getElementById("indicator-custom");
  if (custom) {
    custom.addEventListener("submit", (event) => {
      event.preventDefault();
      const input = custom.querySelector("input[name=spec]");
      const spec = input.value.trim().toLowerCase();
      if (spec) setIndicators(state.indicators.concat([spec]));
      input.value = "";
    });
  }

  // --- live: the newest bar over the websocket -----------------------------------------------
  function onCandle(data) {
    if (Number(data.instrument) !== Number(cfg.instrument) || data.timeframe !== cfg.timeframe) return;
    const t = typeof data.ts === "number" ? data.ts : Math.floor(Date.parse(data.ts) / 1000);
    const last = state.bars[state.bars.length - 1];
    if (!Number.isFinite(t) || (last && t < last.t)) return; // the chart only moves forward
    const bar = { t: t, o: +data.open, h: +data.high, l: +data.low, c: +data.close, v: +data.volume };
    if (last && last.t === t) state.bars[state.bars.length - 1] = bar;
    else state.bars.push(bar);
    candles.update(candleOf(bar));
    volume.update(volumeOf(bar));
    showLegend(bar);
    publish();
    scheduleRefresh();
  }

  // Indicators and structure follow the new bar a moment later (bars can arrive in bursts).
  function scheduleRefresh() {
    clearTimeout(state.refreshTimer);
    state.refreshTimer = setTimeout(() => {
      const jobs = [];
      if (state.indicators.length) jobs.push(loadCandles({ keepView: true }));
      if (state.layers.length) jobs.push(loadStructure());
      Promise.all(jobs).catch((err) => showError(err.message));
    }, 1500);
  }

  const subscription = { type: "subscribe", stream: "candles", instrument: cfg.instrument, timeframe: cfg.timeframe };
  function markSubscribed(value) { el.dataset.subscribed = value; }

  function subscribeLive() {
    // live.js sends the subscription on every (re)connect; "subscribed" confirms it.
    window.Live.on("candle", onCandle);
    window.Live.on("subscribed", () => markSubscribed("confirmed"));
    window.Live.subscribe(subscription);
    markSubscribed("sent");
  }

  // --- start -----------------------------------------------------------------------------------
  syncControls();
  subscribeLive();
  loadCandles()
    .then(() => { showLegend(state.bars[state.bars.length - 1]); return loadStructure(); })
    .catch((err) => { el.dataset.state = "error"; showError(err.message); });
})();
