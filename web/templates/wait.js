// The wait page of a signature by the citizen's device (workflow 9.2.2): instead of reloading
// the page every second (the <noscript> refresh does that without scripts), ask esigd whether
// the device has answered (a long poll) and move on only then.
(function () {
  'use strict';
  var page = document.getElementById('wait');
  if (!page) return;
  var status = page.getAttribute('data-status');
  var next = page.getAttribute('data-next');
  function poll() {
    fetch(status, { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { return r.ok ? r.json() : { pending: false }; })
      .then(function (s) { if (s.pending) { poll(); } else { window.location.replace(next); } })
      .catch(function () { setTimeout(function () { window.location.replace(next); }, 2000); });
  }
  poll();
}());
