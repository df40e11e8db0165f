// Live map updates from /api/live (server-sent events fed by PostgreSQL LISTEN/NOTIFY).
// A page sets window.issuemap = {map, heat, markers, zoneId?, liveUrl?, applyReport?} before
// this script runs. The browser's EventSource reconnects by itself; if the stream is closed
// for good we open a new one with a growing delay.
(function () {
  "use strict";
  var state = (window.issuemap = window.issuemap || {});
  state.liveEvents = 0;
  state.liveStatus = "connecting";
  var OPEN = { open: 1, acknowledged: 1, in_progress: 1, reopened: 1 };
  var delay = 1000;

  function defaultApply(event) {
    var point = [event.lat, event.lon];
    if (event.op === "insert" && state.heat && OPEN[event.status]) {
      state.heat.addLatLng(point.concat([1]));
    }
    if (state.markers && window.L) {
      state.byId = state.byId || {};
      var existing = state.byId[event.id];
      if (existing) {
        state.markers.removeLayer(existing);
        delete state.byId[event.id];
      }
      if (OPEN[event.status]) {
        var marker = window.L.circleMarker(point, { radius: 7, color: "#d9480f" });
        // Text, never HTML: category codes come from admins and may hold markup.
        var text = "#" + event.id + " " + event.category + " (" + event.status + ")";
        marker.bindPopup(function () {
          var box = document.createElement("div");
          box.textContent = text;
          return box;
        });
        state.markers.addLayer(marker);
        state.byId[event.id] = marker;
      }
    }
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
      if (state.onBulk) state.onBulk(state.lastEvent);
    });
    source.addEventListener("resync", function () {
      if (state.onResync) state.onResync();
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
