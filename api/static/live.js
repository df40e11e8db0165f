// Live map updates from /api/live (server-sent events fed by PostgreSQL LISTEN/NOTIFY).
// A page sets window.issuemap = {map, heat, markers, upsertReport, openStatuses, zoneId?,
// liveUrl?, applyReport?, onResync?, onBulk?, liveNotice?} before this script runs. Markers are drawn by the page's own
// upsertReport (geo/maps/templates/report_markers.j2), so a live marker's popup speaks the
// page's language with the page's labels, never raw status or category codes. The browser's
// EventSource reconnects by itself; if the stream is closed for good we open a new one with
// a growing delay.
(function () {
  "use strict";
  var state = (window.issuemap = window.issuemap || {});
  state.liveEvents = 0;
  state.liveStatus = "connecting";
  var delay = 1000;

  function isOpen(status) {
    return (state.openStatuses || []).indexOf(status) >= 0;
  }

  function defaultApply(event) {
    if (event.op === "insert" && state.heat && isOpen(event.status)) {
      state.heat.addLatLng([event.lat, event.lon, 1]);
    }
    if (state.upsertReport) state.upsertReport(event);
  }

  // A resync (a report hidden from the public, a reconnect after an outage) or a bulk
  // event (an import) means the markers may be stale. Reloading by itself could take a
  // popup from under a reader's eyes, so by default the page asks: its own words
  // (state.liveNotice, page data in the page's language, never event data) in the panel's
  // polite status region, with a button that reloads the page, query string and all.
  function offerReload() {
    var box = document.getElementById("im-live-notice"), words = state.liveNotice;
    if (!box || !words || box.firstChild) return;
    var text = document.createElement("p");
    text.textContent = words.text;
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = words.reload;
    button.addEventListener("click", function () {
      window.location.reload();
    });
    box.appendChild(text);
    box.appendChild(button);
  }

  function handle(message) {
    var event = JSON.parse(message.data);
    state.liveEvents += 1;
    state.lastEvent = event;
    (state.applyReport || defaultApply)(event);
  }

  function liveUrl() {
    if (state.liveUrl) return state.liveUrl;
    return "/api/live" + (state.zoneId ? "?zone=" + encodeURIComponent(state.zoneId) : "");
  }

  function connect() {
    if (!window.EventSource) return;
    var source = new EventSource(liveUrl());
    state.liveSource = source;
    source.onopen = function () {
      state.liveStatus = "open";
      delay = 1000;
    };
    source.addEventListener("report", handle);
    source.addEventListener("bulk", function (message) {
      state.liveEvents += 1;
      state.lastEvent = JSON.parse(message.data);
      (state.onBulk || offerReload)(state.lastEvent);
    });
    source.addEventListener("resync", function () {
      (state.onResync || offerReload)();
    });
    source.onerror = function () {
      state.liveStatus = "connecting";
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(connect, delay);
        delay = Math.min(delay * 2, 30000);
      }
    };
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", connect);
  } else {
    connect();
  }
})();
