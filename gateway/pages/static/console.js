// The console's only script: a redrive's progress bar (it polls GET /v1/redrives/{id}) and
// its cancel button. Every other page works without JavaScript.
(function () {
  "use strict";
  var box = document.getElementById("redrive");
  if (!box || !box.dataset.url) { return; }
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var cancel = document.getElementById("cancel");

  function show(p) {
    var bar = document.getElementById("bar");
    bar.max = Math.max(p.total, 1);
    bar.value = p.done;
    ["state", "done", "total", "replayed", "refused", "skipped"].forEach(function (name) {
      document.getElementById(name).textContent = p[name];
    });
    document.getElementById("refusals").textContent = Object.keys(p.refusals).map(
      function (r) { return r + ": " + p.refusals[r]; }).join("  ");
    box.dataset.state = p.state;
    if (cancel) { cancel.disabled = p.state !== "running"; }
  }

  function poll() {
    fetch(box.dataset.url, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (p) {
        show(p);
        if (p.state === "running") { setTimeout(poll, 400); }
      })
      .catch(function () { setTimeout(poll, 2000); });
  }

  if (cancel) {
    cancel.addEventListener("click", function () {
      cancel.disabled = true;
      fetch(box.dataset.url + "/cancel", {
        method: "POST", credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf }
      });
    });
  }
  if (box.dataset.state === "running") { poll(); }
}());
