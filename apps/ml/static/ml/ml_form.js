// The ML strategy form (apps/ml/templates/ml/form.html): shows only the inputs that apply
// (label threshold or barriers, the chosen model's parameters, the schedule's time / weekday /
// cron), "select all" per feature group, the count of chosen features, and dims the higher-
// timeframe group while no higher timeframe is chosen. The server rendered every input with
// what was typed and any errors; this only hides and ticks.
(function () {
  "use strict";
  const form = document.getElementById("ml-form");
  if (!form) return;

  function valueOf(name) {
    const checked = form.querySelector(`[name="${name}"]:checked`);
    if (checked) return checked.value;
    const control = form.querySelector(`[name="${name}"]`);
    return control && control.type !== "radio" && control.type !== "checkbox" ? control.value : "";
  }

  function applyWhen() {
    form.querySelectorAll("[data-when]").forEach((block) => {
      const [name, values] = block.dataset.when.split("=");
      const show = values.split(" ").includes(valueOf(name)) || block.querySelector(".has-error") !== null ||
        block.classList.contains("has-error");
      block.hidden = !show;
    });
  }

  function groupBoxes(slug) {
    return Array.from(form.querySelectorAll(`fieldset.feature-group[data-group="${slug}"] input[name=features]`));
  }

  function syncGroups() {
    form.querySelectorAll("input.select-all").forEach((all) => {
      const boxes = groupBoxes(all.dataset.group);
      const ticked = boxes.filter((b) => b.checked).length;
      all.checked = boxes.length > 0 && ticked === boxes.length;
      all.indeterminate = ticked > 0 && ticked < boxes.length;
    });
    const count = form.querySelectorAll("input[name=features]:checked").length;
    const label = document.getElementById("features-count");
    if (label) label.textContent = `${count} chosen.`;
    const htf = valueOf("higher_timeframe");
    form.querySelectorAll("fieldset.feature-group[data-higher]").forEach((group) => {
      group.dataset.inactive = htf ? "0" : "1";
    });
  }

  form.addEventListener("change", (event) => {
    const target = event.target;
    if (target && target.classList && target.classList.contains("select-all")) {
      groupBoxes(target.dataset.group).forEach((box) => { box.checked = target.checked; });
    }
    applyWhen();
    syncGroups();
  });

  applyWhen();
  syncGroups();
  form.dataset.ready = "1";
})();
