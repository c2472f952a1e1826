/* Starts the live simulation page from what the template put in the DOM (no inline script). */
(function () {
  "use strict";

  function boot() {
    const root = document.getElementById("sim-root");
    if (!root || !window.FanoutSim) return;
    const data = document.getElementById("initial-frame");
    let initialFrame = null;
    if (data) {
      try {
        initialFrame = JSON.parse(data.textContent);
      } catch (err) {
        console.warn("Fanout: the initial frame is not valid JSON", err);
      }
    }
    window.FanoutSim.start({
      wsPath: root.dataset.wsPath,
      initialFrame: initialFrame,
      canControl: root.dataset.canControl === "true",
      apiUrl: root.dataset.apiUrl || "",
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", boot);
  } else {
    boot();
  }
})();
