// The console's only script (served from our origin; no inline script anywhere):
// the live count and sample while a segment rule is edited, and the import progress bar.
(function () {
  "use strict";

  function formBody(fields) {
    return Object.keys(fields).map(function (k) {
      return encodeURIComponent(k) + "=" + encodeURIComponent(fields[k]);
    }).join("&");
  }

  function livePreview(form) {
    var rule = form.querySelector("#rule");
    var count = document.getElementById("live-count");
    var error = document.getElementById("live-error");
    var body = document.querySelector("#live-sample tbody");
    var timer = null;
    var asked = 0;
    function show(answer) {
      body.textContent = "";
      if (!answer.ok) {
        count.textContent = "This rule does not compile:";
        error.textContent = answer.error;
        error.hidden = false;
        return;
      }
      error.hidden = true;
      count.textContent = answer.count.toLocaleString("en-GB") + (answer.count === 1 ? " active member" : " active members");
      answer.sample.forEach(function (m) {
        var tr = document.createElement("tr");
        [m.email, m.name, m.region].forEach(function (v) {
          var td = document.createElement("td");
          td.textContent = v;
          tr.appendChild(td);
        });
        body.appendChild(tr);
      });
    }
    function ask() {
      var mine = ++asked;
      fetch(form.dataset.preview, {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/x-www-form-urlencoded"},
        body: formBody({csrf: form.querySelector("input[name=csrf]").value, rule: rule.value})
      }).then(function (r) { return r.json(); }).then(function (answer) {
        if (mine === asked) { show(answer); }
      }).catch(function () { count.textContent = "(could not count: reload the page)"; });
    }
    rule.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(ask, 250);
    });
    ask();
  }

  function importProgress(job) {
    var bar = document.getElementById("import-progress");
    var text = document.getElementById("import-text");
    function poll() {
      fetch(job.dataset.status, {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (s) {
        bar.value = s.percent;
        text.textContent = "Reading… " + s.percent + " %";
        if (s.state === "running") { setTimeout(poll, 400); } else { window.location.reload(); }
      }).catch(function () { setTimeout(poll, 1500); });
    }
    setTimeout(poll, 300);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("segment-form");
    if (form) { livePreview(form); }
    var job = document.getElementById("job");
    if (job && job.dataset.state === "running") { importProgress(job); }
  });
}());
