/* The report form's map pin and "use my location" (/report). The form works without this
   script: both only fill the latitude and longitude fields, which the resident may also
   type, and the page's address field needs no script at all. No data of the page is read
   as code: messages come from data-* attributes. */
(function () {
  "use strict";
  var form = document.getElementById("report-form");
  if (!form) return;
  var lat = document.getElementById("lat");
  var lon = document.getElementById("lon");
  var box = document.getElementById("map");
  var help = document.getElementById("map-help");
  var locate = document.getElementById("locate");
  var said = document.getElementById("locate-status");
  var map = null;
  var pin = null;

  function number(input) {
    var value = parseFloat(String(input.value).replace(",", "."));
    return isFinite(value) ? value : null;
  }

  function showPin(la, lo, zoom) {
    if (!map) return;
    if (pin) {
      pin.setLatLng([la, lo]);
    } else {
      pin = window.L.marker([la, lo], { draggable: true, keyboard: false }).addTo(map);
      pin.on("dragend", function () {
        var at = pin.getLatLng();
        fill(at.lat, at.lng, false);
      });
    }
    if (zoom) map.setView([la, lo], Math.max(map.getZoom(), 17));
  }

  function fill(la, lo, zoom) {
    lat.value = la.toFixed(6);
    lon.value = lo.toFixed(6);
    showPin(la, lo, zoom);
  }

  if (window.L && box) {
    box.hidden = false;
    help.hidden = false;
    map = window.L.map(box, { scrollWheelZoom: false });
    if (box.dataset.tiles) {
      window.L.tileLayer(box.dataset.tiles, {
        maxZoom: 19,
        attribution: box.dataset.attribution || ""
      }).addTo(map);
    }
    var b = (box.dataset.bounds || "").split(",").map(parseFloat);
    if (b.length === 4 && b.every(isFinite)) {
      map.fitBounds([[b[1], b[0]], [b[3], b[2]]]);
    } else {
      map.setView([13.7563, 100.5018], 12);
    }
    map.on("click", function (event) {
      fill(event.latlng.lat, event.latlng.lng, false);
    });
    var given = [number(lat), number(lon)];
    if (given[0] !== null && given[1] !== null) showPin(given[0], given[1], true);
    var typed = function () {
      var la = number(lat), lo = number(lon);
      if (la !== null && lo !== null && Math.abs(la) <= 90 && Math.abs(lo) <= 180) {
        showPin(la, lo, true);
      }
    };
    lat.addEventListener("change", typed);
    lon.addEventListener("change", typed);
  }

  if (locate && navigator.geolocation) {
    locate.hidden = false;
    locate.addEventListener("click", function () {
      said.textContent = locate.dataset.wait;
      navigator.geolocation.getCurrentPosition(
        function (position) {
          fill(position.coords.latitude, position.coords.longitude, true);
          said.textContent = locate.dataset.found;
        },
        function () {
          said.textContent = locate.dataset.failed;
        },
        { enableHighAccuracy: true, timeout: 20000, maximumAge: 60000 }
      );
    });
  }
})();
