// The admin pages (/admin): SQLAdmin's own scripts send deletes with jQuery; every such
// request carries the page's CSRF token, which the server asks of a signed-in browser.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (!meta || !window.jQuery) {
    return;
  }
  var token = meta.getAttribute("content");
  window.jQuery.ajaxSetup({
    beforeSend: function (xhr, settings) {
      if (!/^(GET|HEAD|OPTIONS)$/i.test(settings.type || "GET")) {
        xhr.setRequestHeader("X-CSRFToken", token);
      }
    },
  });
})();
