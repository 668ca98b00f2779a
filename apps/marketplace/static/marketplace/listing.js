// A listing's verified equity curve (TradingView Lightweight Charts v5, static/vendor): one point
// per UTC day, computed by the platform from the leader's fills (the page's JSON, epoch seconds).
// For tests and tools the chart carries data-state (ready | empty) and data-points.
(function () {
  "use strict";
  const LWC = window.LightweightCharts;
  const el = document.getElementById("equity-chart");
  const configEl = document.getElementById("listing-chart-config");
  if (!el || !configEl) return;
  const cfg = JSON.parse(configEl.textContent);
  const curve = cfg.curve || [];
  if (!LWC || !curve.length) {
    el.dataset.state = "empty";
    el.textContent = "No fills yet: the curve starts with the first trade.";
    return;
  }
  const chart = LWC.createChart(el, {
    autoSize: true,
    layout: { background: { type: "solid", color: "#0f1419" }, textColor: "#d9e1e8", attributionLogo: true },
    grid: { vertLines: { color: "#1c252f" }, horzLines: { color: "#1c252f" } },
    rightPriceScale: { borderColor: "#2a3440" },
    timeScale: { borderColor: "#2a3440", timeVisible: false },
  });
  const series = chart.addSeries(LWC.AreaSeries, {
    lineColor: "#3fa7ff", topColor: "rgba(63, 167, 255, 0.35)", bottomColor: "rgba(63, 167, 255, 0.02)",
    lineWidth: 2, priceLineVisible: false, title: `Equity (${cfg.label}, ${cfg.currency})`,
  });
  const points = [];
  let last = -Infinity;
  curve.forEach((p) => {
    if (p.t > last && p.equity !== null) { points.push({ time: p.t, value: Number(p.equity) }); last = p.t; }
  });
  series.setData(points);
  chart.timeScale().fitContent();
  el.dataset.points = String(points.length);
  el.dataset.state = "ready";
})();
