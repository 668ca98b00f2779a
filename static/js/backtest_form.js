// The run form (backtest, optimisation, walk-forward): rebuilds the parameter inputs (or the
// search table) from the catalogue JSON embedded in the page when the strategy changes, narrows
// the timeframes to those stored for the chosen instrument, and hides settings that do not apply
// (a limit offset for market entries...). No round trip: everything comes from #form-config.
// Inputs are named as the server renders them: param_<name>, search_/low_/high_/step_<name>.
(function () {
  "use strict";
  const configEl = document.getElementById("form-config");
  const form = document.getElementById("run-form");
  if (!configEl || !form) return;
  const cfg = JSON.parse(configEl.textContent);
  const strategy = form.querySelector("[name=strategy]");
  const instrument = form.querySelector("[name=instrument]");
  const timeframe = form.querySelector("[name=timeframe]");
  const paramsBox = document.getElementById("params-fields");
  const spaceBody = document.getElementById("space-rows");
  const summary = document.getElementById("strategy-summary");

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (v === null || v === undefined || v === false) return;
      if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    });
    (children || []).forEach((c) => node.appendChild(c));
    return node;
  }

  function paramInput(name, prop) {
    const id = `id_${name}`;
    if (Array.isArray(prop.enum)) {
      const select = el("select", { name: name, id: id });
      prop.enum.forEach((choice) => {
        select.appendChild(el("option", { value: String(choice), text: String(choice), selected: choice === prop.default }));
      });
      return select;
    }
    if (prop.type === "boolean") return el("input", { type: "checkbox", name: name, id: id, checked: prop.default === true });
    if (prop.type === "integer" || prop.type === "number") {
      return el("input", {
        type: "number", name: name, id: id, value: prop.default,
        min: prop.minimum, max: prop.maximum, step: prop.multipleOf || (prop.type === "integer" ? 1 : "any"),
      });
    }
    return el("input", { type: "text", name: name, id: id, value: prop.default });
  }

  function fieldBlock(name, label, control, help) {
    const isCheck = control.type === "checkbox";
    const block = el("div", { class: `field${isCheck ? " check" : ""}`, "data-field": name });
    const lab = el("label", { for: control.id });
    if (isCheck) { lab.appendChild(control); lab.appendChild(document.createTextNode(` ${label}`)); block.appendChild(lab); }
    else { lab.textContent = label; block.appendChild(lab); block.appendChild(control); }
    if (help) block.appendChild(el("small", { class: "helptext", text: help }));
    return block;
  }

  function describe(item) {
    if (!summary) return;
    const value = strategy.value;
    if (item) summary.textContent = item.summary || "";
    else if (cfg.ruleSets && cfg.ruleSets[value]) summary.textContent = `Your rule strategy “${cfg.ruleSets[value]}”: its conditions decide entries and exits.`;
    else summary.textContent = "";
  }

  function renderParams(item) {
    if (!paramsBox) return;
    paramsBox.replaceChildren();
    const entries = item ? Object.entries(item.params) : [];
    if (!entries.length) {
      paramsBox.appendChild(el("p", { class: "muted", text: strategy.value
        ? "No parameters to set: a rule strategy's conditions say everything." : "Choose a strategy to see its parameters." }));
      return;
    }
    entries.forEach(([name, prop]) => {
      paramsBox.appendChild(fieldBlock(`param_${name}`, name.replace(/_/g, " "), paramInput(`param_${name}`, prop), prop.description));
    });
  }

  function cell(control) {
    return el("td", {}, [el("div", { class: "field cell", "data-field": control.name }, [control])]);
  }

  function renderSpace(item) {
    if (!spaceBody) return;
    spaceBody.replaceChildren();
    const entries = item ? Object.entries(item.params) : [];
    if (!entries.length) {
      spaceBody.appendChild(el("tr", { class: "empty" }, [el("td", { colspan: 6, text: strategy.value
        ? "This strategy has no parameters to search." : "Choose a strategy to see its parameters." })]));
      return;
    }
    entries.forEach(([name, prop]) => {
      const space = item.space[name];
      const row = el("tr", { "data-param": name }, [el("td", {}, [el("code", { text: name })])]);
      if (space) {
        row.appendChild(cell(el("input", { type: "checkbox", name: `search_${name}`, id: `id_search_${name}`, checked: space.search })));
      } else {
        row.appendChild(el("td", {}, [el("span", { class: "muted", text: "–" })]));
      }
      if (space && space.kind === "range") {
        ["low", "high", "step"].forEach((part) => {
          row.appendChild(cell(el("input", { type: "number", step: "any", name: `${part}_${name}`, id: `id_${part}_${name}`, value: space[part] })));
        });
      } else {
        row.appendChild(el("td", { colspan: 3, class: "muted", text: space ? "every choice" : "not searchable" }));
      }
      row.appendChild(cell(paramInput(`param_${name}`, prop)));
      spaceBody.appendChild(row);
    });
    syncSpace();
  }

  // A searched parameter's fixed value does not apply, and an unsearched one's range does not.
  function syncSpace() {
    if (!spaceBody) return;
    spaceBody.querySelectorAll("tr[data-param]").forEach((row) => {
      const name = row.dataset.param;
      const search = row.querySelector(`[name=search_${name}]`);
      const searched = Boolean(search && search.checked);
      ["low", "high", "step"].forEach((part) => {
        const input = row.querySelector(`[name=${part}_${name}]`);
        if (input) input.closest("td").classList.toggle("inactive", !searched);
      });
      const value = row.querySelector(`[name=param_${name}]`);
      if (value) value.closest("td").classList.toggle("inactive", searched);
    });
  }

  function onStrategy() {
    const item = cfg.catalogue[strategy.value];
    describe(item);
    renderParams(item);
    renderSpace(item);
  }

  function renderTimeframes(keepSelection) {
    if (!instrument || !timeframe) return;
    const stored = cfg.timeframes[instrument.value] || [];
    const current = timeframe.value;
    timeframe.replaceChildren();
    if (!stored.length) {
      timeframe.appendChild(el("option", { value: "", text: instrument.value ? "no candles stored" : "choose an instrument" }));
      return;
    }
    const choice = keepSelection && stored.includes(current) ? current : stored.includes("1h") ? "1h" : stored[0];
    stored.forEach((tf) => timeframe.appendChild(el("option", { value: tf, text: tf, selected: tf === choice })));
    timeframe.value = choice;
  }

  function applyWhen() {
    form.querySelectorAll("[data-when]").forEach((block) => {
      const [name, values] = block.dataset.when.split("=");
      const control = form.querySelector(`[name=${name}]`);
      const show = !control || values.split(" ").includes(control.value) || block.classList.contains("has-error");
      block.hidden = !show;
    });
  }

  strategy.addEventListener("change", onStrategy);
  if (instrument) instrument.addEventListener("change", () => renderTimeframes(false));
  form.addEventListener("change", (event) => {
    applyWhen();
    if (event.target && String(event.target.name || "").startsWith("search_")) syncSpace();
  });
  // The server rendered the inputs (with any errors and what was typed): keep them, only
  // narrow the timeframes and hide what does not apply.
  describe(cfg.catalogue[strategy.value]);
  renderTimeframes(true);
  applyWhen();
  syncSpace();
  form.dataset.ready = "1";
})();
