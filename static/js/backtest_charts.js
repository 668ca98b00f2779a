// A finished backtest's charts (TradingView Lightweight Charts v5, static/vendor):
// - #equity-chart: the equity curve with buy-and-hold above, the drawdown (in %) in a pane below,
//   from the downsampled curves stored with the backtest (epoch ms in the page's JSON);
// - #candles-chart: the newest bars of the backtest's range from /api/v1/instruments/<id>/candles/
//   with a marker at every entry (arrow) and exit (dot, green for a profit, red for a loss).
// The walk-forward page reuses the equity part for its stitched out-of-sample curve.
// For tests and tools each chart carries data-state (loading | ready | error) and counts.
(function () {
  "use strict";
  const LWC = window.LightweightCharts;
  const configEl = document.getElementById("backtest-chart");
  if (!LWC || !configEl) return;
  const cfg = JSON.parse(configEl.textContent);
  const THEME = { bg: "#0f1419", text: "#d9e1e8", grid: "#1c252f", line: "#2a3440", up: "#2ecc71", down: "#ff5c5c" };

  function makeChart(el, extra) {
    return LWC.createChart(el, Object.assign({
      autoSize: true,
      layout: {
        background: { type: "solid", color: THEME.bg }, textColor: THEME.text, attributionLogo: true,
        panes: { separatorColor: THEME.line, enableResize: true },
      },
      grid: { vertLines: { color: THEME.grid }, horzLines: { color: THEME.grid } },
      rightPriceScale: { borderColor: THEME.line },
      timeScale: { borderColor: THEME.line, timeVisible: true, secondsVisible: false },
      crosshair: { mode: LWC.CrosshairMode.Normal },
    }, extra || {}));
  }

  // Curves come in epoch ms; the chart wants strictly increasing epoch seconds.
  function points(times, values, scale) {
    const out = [];
    let last = -Infinity;
    for (let i = 0; i < times.length; i++) {
      const t = Math.floor(times[i] / 1000);
      if (t <= last) continue;
      last = t;
      const v = values[i];
      out.push(v === null || v === undefined ? { time: t } : { time: t, value: v * (scale || 1) });
    }
    return out;
  }

  function drawEquity() {
    const el = document.getElementById("equity-chart");
    const curves = cfg.curves || {};
    if (!el) return;
    const times = curves.t || [];
    if (!times.length) { el.dataset.state = "empty"; el.textContent = "No equity curve was stored."; return; }
    const chart = makeChart(el, { rightPriceScale: { borderColor: THEME.line, scaleMargins: { top: 0.08, bottom: 0.05 } } });
    const equity = chart.addSeries(LWC.LineSeries, { color: "#3fa7ff", lineWidth: 2, title: "Strategy", priceLineVisible: false });
    equity.setData(points(times, curves.equity || []));
    if ((curves.benchmark || []).length) {
      const bench = chart.addSeries(LWC.LineSeries, {
        color: "#8a99a8", lineWidth: 1, lineStyle: LWC.LineStyle.Dashed, title: "Buy & hold", priceLineVisible: false,
        lastValueVisible: false,
      });
      bench.setData(points(times, curves.benchmark));
    }
    if ((curves.drawdown || []).length) {
      const dd = chart.addSeries(LWC.AreaSeries, {
        lineColor: THEME.down, topColor: "rgba(255, 92, 92, 0.05)", bottomColor: "rgba(255, 92, 92, 0.45)",
        lineWidth: 1, priceLineVisible: false, title: "Drawdown %", invertFilledArea: true,
        priceFormat: { type: "custom", formatter: (v) => `${v.toFixed(1)}%` },
      }, 1);
      dd.setData(points(times, curves.drawdown, 100));
      const panes = chart.panes();
      if (panes.length > 1) { panes[0].setStretchFactor(3); panes[1].setStretchFactor(1); }
    }
    chart.timeScale().fitContent();
    el.dataset.points = String(times.length);
    el.dataset.state = "ready";
  }

  function markersFor(trades, first, last) {
    const out = [];
    trades.forEach((trade) => {
      const long = trade.side === "long";
      if (trade.entry !== null && trade.entry >= first && trade.entry <= last) {
        out.push({
          time: trade.entry, position: long ? "belowBar" : "aboveBar", shape: long ? "arrowUp" : "arrowDown",
          color: long ? THEME.up : THEME.down, text: long ? "L" : "S",
        });
      }
      if (trade.exit !== null && trade.exit >= first && trade.exit <= last) {
        // Exits on the strategy's own signal need no label; stops, targets and the like do.
        out.push({
          time: trade.exit, position: long ? "aboveBar" : "belowBar", shape: "circle",
          color: trade.pnl >= 0 ? THEME.up : THEME.down, text: trade.reason && trade.reason !== "signal" ? trade.reason : "",
        });
      }
    });
    return out.sort((a, b) => a.time - b.time);
  }

  async function drawCandles() {
    const el = document.getElementById("candles-chart");
    if (!el || !cfg.candlesUrl) return;
    const url = new URL(cfg.candlesUrl, location.origin);
    url.searchParams.set("timeframe", cfg.timeframe);
    url.searchParams.set("limit", String(cfg.limit));
    if (cfg.end) url.searchParams.set("end", String(cfg.end));
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error((body.error && body.error.message) || `HTTP ${response.status}`);
    const bars = (body.candles || []).filter((b) => cfg.start === null || b.t >= cfg.start);
    const tick = cfg.tickSize || 0.01;
    const precision = Math.max(0, Math.min(10, Math.round(-Math.log10(tick))));
    const chart = makeChart(el);
    const series = chart.addSeries(LWC.CandlestickSeries, {
      upColor: THEME.up, downColor: THEME.down, wickUpColor: THEME.up, wickDownColor: THEME.down, borderVisible: false,
      priceFormat: { type: "price", precision: precision, minMove: tick },
    });
    series.setData(bars.map((b) => ({ time: b.t, open: b.o, high: b.h, low: b.l, close: b.c })));
    const first = bars.length ? bars[0].t : 0;
    const last = bars.length ? bars[bars.length - 1].t : 0;
    const markers = markersFor(cfg.markers || [], first, last);
    LWC.createSeriesMarkers(series, markers);
    chart.timeScale().fitContent();
    el.dataset.bars = String(bars.length);
    el.dataset.markers = String(markers.length);
    el.dataset.state = "ready";
  }

  drawEquity();
  drawCandles().catch((err) => {
    const el = document.getElementById("candles-chart");
    const box = document.getElementById("candles-error");
    if (el) el.dataset.state = "error";
    if (box) { box.hidden = false; box.textContent = `The candles could not be loaded: ${err.message}`; }
  });
})();
