// The subscribe / edit form: show the multiplier or the notional input only for the sizing mode
// that uses it (both stay in the form, so what was typed is kept when the mode changes back).
(function () {
  const mode = document.getElementById("id_sizing_mode");
  if (!mode) return;
  function sync() {
    document.querySelectorAll("[data-sizing]").forEach((el) => {
      el.hidden = el.dataset.sizing !== mode.value;
    });
  }
  mode.addEventListener("change", sync);
  sync();
})();
