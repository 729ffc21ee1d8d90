// Live parts of the page: every element with data-refresh="URL" is replaced, every few seconds,
// by the HTML the server renders at that URL (the same templates as the page). Skipped while
// someone types in it. No library, nothing loaded from elsewhere.
(function () {
  "use strict";
  var seconds = Number(document.body.dataset.refreshSeconds) || 3;
  function typing(el) {
    var a = document.activeElement;
    return a && el.contains(a) && /^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName);
  }
  function refresh(el) {
    if (typing(el)) return;
    fetch(el.dataset.refresh, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) { el.innerHTML = html; } })
      .catch(function () { /* the next round tries again */ });
  }
  setInterval(function () {
    if (document.hidden) return;
    document.querySelectorAll("[data-refresh]").forEach(refresh);
  }, seconds * 1000);
})();
