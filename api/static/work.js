// The crew work page (/work, geo/maps/templates/work.html.j2). Draws the team's open work
// from the page's JSON document (#work-data) into the list and the map and keeps the two in
// step: selecting an item in one marks it in the other, and both show what the filters kept.
// Status moves, undo and forwarding go to the JSON API with the session's CSRF token; live
// events (live.js, which this script configures through window.issuemap) change the item
// and the marker in place. Every value is placed as text, never parsed as HTML.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("work-data").textContent);
  var l = data.l;
  var list = document.getElementById("work-list");
  if (!list) return;

  var items = {}; // report id -> {r: item, li: list element, marker: Leaflet marker}
  var ended = {}; // report id -> timer: a move that ended the work, still undoable
  var fetching = {}; // report id -> true while an arriving report is being read
  var moving = {}; // report id -> true while a move of one's own awaits its answer
  // report id -> the latest audit event id shown. A move's answer and the stream both tell of
  // a change, in either order: a stream event older than what the page shows (a rejection
  // heard of after its undo's answer) would take the item away, or show it back in time.
  var known = {};
  var selected = null;
  var map = null, markers = null, fitted = false;
  var dates = new Intl.DateTimeFormat(data.lang === "th" ? "th-TH" : "en-GB", {
    timeZone: data.timezone, day: "numeric", month: "short", year: "numeric",
    hour: "2-digit", minute: "2-digit"
  });

  function fill(text, values) {
    return text.replace(/\{(\w+)\}/g, function (whole, key) {
      return values[key] === undefined ? whole : String(values[key]);
    });
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function button(text, cls) {
    var b = el("button", cls, text);
    b.type = "button";
    return b;
  }
  function isOpen(status) { return data.open_statuses.indexOf(status) >= 0; }
  function statusWords(status) { return data.statuses[status] || status; }
  function categoryWords(r) { return data.categories[r.category] || r.category_name || r.category; }
  function seconds(iso) { return iso ? Date.parse(iso) / 1000 : null; }
  function overdue(r) {
    var due = seconds(r.due_at);
    return isOpen(r.status) && due !== null && due < Date.now() / 1000;
  }
  function span(s) {
    var minutes = Math.max(0, Math.floor(s / 60)), hours = Math.floor(minutes / 60);
    if (hours >= 24) return Math.floor(hours / 24) + " " + l.days + " " + (hours % 24) + " " + l.hours;
    if (hours >= 1) return hours + " " + l.hours;
    return minutes + " " + l.minutes;
  }
  function csrf() {
    var found = /(?:^|;\s*)csrftoken=([^;]+)/.exec(document.cookie);
    if (found) return decodeURIComponent(found[1]);
    var field = document.querySelector("input[name=csrftoken]");
    return field ? field.value : "";
  }

  // --- talking to the API --------------------------------------------------------------

  function SessionEnded() { this.message = l.session_ended; }

  function call(method, url, body) {
    var init = {method: method, credentials: "same-origin",
                headers: {"Accept": "application/json"}};
    if (method !== "GET") init.headers["X-CSRFToken"] = csrf();
    if (body instanceof FormData) {
      init.body = body;
    } else if (body) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    // Errors come back as sentences in the page's language.
    url += (url.indexOf("?") < 0 ? "?" : "&") + "lang=" + encodeURIComponent(data.lang);
    return fetch(url, init).then(function (answer) {
      return answer.json().catch(function () { return {}; }).then(function (json) {
        if (answer.status === 401) throw new SessionEnded();
        if (answer.status === 403 && data.team) return refused(json);
        if (!answer.ok) throw new Error(json.detail || String(answer.status));
        return json;
      });
    });
  }

  // A session that ended makes the caller the public, whom a change refuses with 403 like
  // any other role; the team's queue, which only staff may read, tells the two apart.
  function refused(json) {
    return fetch("/api/teams/" + data.team.id + "/queue?limit=1",
                 {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (probe) {
        if (probe.status === 401) throw new SessionEnded();
        throw new Error(json.detail || "403");
      });
  }

  // --- the toast: what was done, and a way to take it back ------------------------------

  var toast = document.getElementById("toast"), toastTimer = null;

  function say(text, undo, link) {
    clearTimeout(toastTimer);
    toast.textContent = "";
    toast.appendChild(el("span", "toast-text", text));
    if (undo) {
      var b = button(l.undo, "undo");
      b.addEventListener("click", function () {
        b.disabled = true;
        undo();
      });
      toast.appendChild(b);
    }
    if (link) {
      var a = el("a", "button", l.sign_in);
      a.href = "/login?lang=" + encodeURIComponent(data.lang) + "&next="
        + encodeURIComponent(location.pathname + location.search);
      toast.appendChild(a);
    }
    toast.classList.add("shown");
    toastTimer = setTimeout(function () {
      toast.classList.remove("shown");
      toast.textContent = "";
    }, (undo ? data.undo_s : 8) * 1000);
  }

  function failed(error, li) {
    var text = error instanceof SessionEnded ? error.message : l.failed + ": " + error.message;
    if (li) {
      var box = li.querySelector(".item-error");
      box.textContent = text;
      box.hidden = false;
    }
    say(text, null, error instanceof SessionEnded);
  }

  // --- the list --------------------------------------------------------------------------

  function render(r) {
    var li = el("li", "item");
    li.id = "report-" + r.id;
    li.dataset.id = r.id;
    li.dataset.status = r.status;
    if (r.overdue) li.classList.add("overdue");
    if (!isOpen(r.status)) li.classList.add("ended");
    if (selected === r.id) li.classList.add("selected");
    var heading = el("h2", "item-title", "#" + r.id + " " + categoryWords(r));
    heading.tabIndex = -1;
    li.appendChild(heading);
    var badges = el("p", "badges");
    badges.appendChild(el("span", "badge status-" + r.status, statusWords(r.status)));
    if (r.overdue) badges.appendChild(el("span", "badge overdue", l.overdue));
    li.appendChild(badges);
    if (r.description) li.appendChild(description(r, li));
    if (r.address) li.appendChild(el("p", "address", r.address));
    var facts = el("p", "facts");
    facts.appendChild(el("span", "age",
      fill(l.reported, {age: span(Date.now() / 1000 - seconds(r.created_at))})));
    if (r.due_at) {
      facts.appendChild(el("span", "due" + (r.overdue ? " late" : ""),
        l.due + ": " + dates.format(new Date(r.due_at))));
    }
    li.appendChild(facts);
    if (r.photo_ids && r.photo_ids.length) {
      var photos = el("p", "photos");
      r.photo_ids.forEach(function (id, n) {
        var a = el("a");
        a.href = "/api/photos/" + id;
        var img = el("img");
        img.src = "/api/photos/" + id;
        img.loading = "lazy";
        img.alt = fill(l.photo, {n: n + 1, id: r.id});
        a.appendChild(img);
        photos.appendChild(a);
      });
      li.appendChild(photos);
    }
    var nav = el("p", "navigate");
    nav.appendChild(el("span", "nav-label", l.navigate + ":"));
    var where = r.lat.toFixed(6) + "," + r.lon.toFixed(6);
    var geo = el("a", "geo-link", l.geo_link);
    geo.href = "geo:" + where;
    nav.appendChild(geo);
    var maps = el("a", "maps-link", l.maps_link);
    maps.href = "https://www.google.com/maps/dir/?api=1&destination=" + encodeURIComponent(where);
    maps.rel = "noopener noreferrer";
    maps.target = "_blank";
    nav.appendChild(maps);
    var show = button(l.on_map, "secondary on-map");
    show.addEventListener("click", function () {
      select(r.id);
      showTab("map");
    });
    nav.appendChild(show);
    li.appendChild(nav);
    // An ended report stays in the queue only for a move of one's own (undoable, or awaiting
    // its answer): it takes no more moves here.
    if (data.actions && isOpen(r.status)) li.appendChild(actions(r, li));
    var problem = el("p", "item-error");
    problem.setAttribute("role", "alert");
    problem.hidden = true;
    li.appendChild(problem);
    li.addEventListener("click", function (event) {
      if (!event.target.closest("a, button, input, textarea, select, summary, label")) select(r.id);
    });
    return li;
  }

  // A long description arrives cut short (the page stays small); the rest is read on asking.
  function description(r, li) {
    var text = el("p", "text", r.description + (r.description_cut ? "…" : ""));
    if (!r.description_cut) return text;
    var box = el("div", "description");
    text.tabIndex = -1;
    box.appendChild(text);
    var all = button(l.read_all, "secondary read-all");
    all.addEventListener("click", function () {
      all.disabled = true;
      call("GET", "/api/reports/" + r.id).then(function (body) {
        r.description = body.description || r.description;
        delete r.description_cut;
        text.textContent = r.description;
        all.remove();
        text.focus();
      }, function (error) {
        all.disabled = false;
        failed(error, li);
      });
    });
    box.appendChild(all);
    return box;
  }

  function actions(r, li) {
    var box = el("div", "work-actions");
    var more = el("details", "more");
    more.appendChild(el("summary", undefined, l.details));
    [["note", l.staff_note], ["public_note", l.public_note]].forEach(function (field) {
      var id = field[0] + "-" + r.id;
      var label = el("label", undefined, field[1]);
      label.htmlFor = id;
      var area = el("textarea");
      area.id = id;
      area.name = field[0];
      area.rows = 2;
      area.maxLength = data.note_max;
      more.appendChild(label);
      more.appendChild(area);
    });
    var photoId = "photo-" + r.id;
    var photoLabel = el("label", undefined, l.after_photo);
    photoLabel.htmlFor = photoId;
    var photo = el("input");
    photo.type = "file";
    photo.id = photoId;
    photo.name = "photo";
    photo.accept = "image/*";
    photo.setAttribute("capture", "environment");
    more.appendChild(photoLabel);
    more.appendChild(photo);
    box.appendChild(more);
    var bar = el("div", "moves");
    bar.setAttribute("role", "group");
    bar.setAttribute("aria-label", l.move + " (#" + r.id + ")");
    r.next.forEach(function (to) {
      var b = button(statusWords(to), "move" + (data.confirm.indexOf(to) >= 0 ? " final" : ""));
      b.dataset.status = to;
      b.addEventListener("click", function () { move(r.id, to); });
      bar.appendChild(b);
    });
    if (data.teams.length) {
      var f = button(l.forward, "forward secondary");
      f.addEventListener("click", function () { forward(r.id); });
      bar.appendChild(f);
    }
    box.appendChild(bar);
    return box;
  }

  // Replace an item's element, keeping what the person had typed or chosen in it.
  function redraw(id) {
    var entry = items[id], old = entry.li, fresh = render(entry.r);
    var oldMore = old.querySelector("details.more"), freshMore = fresh.querySelector("details.more");
    if (oldMore && freshMore) {
      freshMore.open = oldMore.open;
      ["note", "public_note"].forEach(function (name) {
        var before = oldMore.querySelector("[name=" + name + "]");
        freshMore.querySelector("[name=" + name + "]").value = before.value;
      });
      var keep = oldMore.querySelector("input[type=file]");
      freshMore.replaceChild(keep, freshMore.querySelector("input[type=file]"));
    }
    old.replaceWith(fresh);
    entry.li = fresh;
    if (moving[id]) busy(fresh, true);
    if (entry.marker) {
      // A divIcon keeps its element, so its title is written here, not by Leaflet.
      entry.marker.options.title = title(entry.r);
      entry.marker.setIcon(icon(entry.r));
      if (entry.marker.getElement()) entry.marker.getElement().title = title(entry.r);
      entry.marker.setPopupContent(popup(entry.r));
    }
  }

  function before(r, other) {
    var a = seconds(r.due_at) || Infinity, b = seconds(other.due_at) || Infinity;
    return a < b || (a === b && r.id < other.id);
  }

  function add(r) {
    if (items[r.id]) {
      items[r.id].r = r;
      redraw(r.id);
      return;
    }
    var entry = {r: r, li: render(r), marker: null};
    items[r.id] = entry;
    // Soonest due first, which keeps overdue work at the top.
    var next = null;
    Array.prototype.some.call(list.children, function (li) {
      var other = items[li.dataset.id];
      if (other && before(r, other.r)) { next = li; return true; }
      return false;
    });
    list.insertBefore(entry.li, next);
    if (markers) addMarker(entry);
    counted();
  }

  function remove(id) {
    var entry = items[id];
    if (!entry) return;
    entry.li.remove();
    if (entry.marker) markers.removeLayer(entry.marker);
    delete items[id];
    clearTimeout(ended[id]);
    delete ended[id];
    if (selected === id) selected = null;
    counted();
  }

  // The counts at the top cover the whole queue; they can be kept true here only while
  // the page shows the whole queue (no filter, nothing cut off).
  function counted() {
    document.getElementById("work-empty").hidden = list.children.length > 0;
    if (data.filters.any || data.truncated) return;
    var open = 0, late = 0;
    Object.keys(items).forEach(function (id) {
      var r = items[id].r;
      if (!isOpen(r.status)) return;
      open += 1;
      if (r.overdue) late += 1;
    });
    var line = document.getElementById("overdue-count");
    line.textContent = fill(l.overdue_count, {overdue: late, open: open});
    line.classList.toggle("has-overdue", late > 0);
  }

  function matches(r) {
    var f = data.filters;
    if (!isOpen(r.status)) return false;
    if (f.category && r.category !== f.category) return false;
    if (f.status && r.status !== f.status) return false;
    if (f.overdue && !r.overdue) return false;
    if (f.age_days && seconds(r.created_at) > Date.now() / 1000 - f.age_days * 86400) return false;
    return true;
  }

  // --- the map ---------------------------------------------------------------------------

  function icon(r) {
    var dot = el("span", "pin status-" + r.status + (r.overdue ? " overdue" : "")
      + (selected === r.id ? " selected" : ""), r.overdue ? "!" : "");
    dot.setAttribute("aria-hidden", "true");
    var size = selected === r.id ? 34 : r.overdue ? 28 : 22;
    return L.divIcon({html: dot, className: "work-marker", iconSize: [size, size],
                      iconAnchor: [size / 2, size / 2], popupAnchor: [0, -size / 2]});
  }
  function title(r) {
    return "#" + r.id + " " + categoryWords(r) + ": " + statusWords(r.status)
      + (r.overdue ? ", " + l.overdue : "");
  }
  function popup(r) {
    var box = el("div", "work-popup");
    box.appendChild(el("b", undefined, "#" + r.id + " " + categoryWords(r)));
    box.appendChild(el("div", undefined, statusWords(r.status) + (r.overdue ? " · " + l.overdue : "")));
    var b = button(l.in_list, "secondary in-list");
    b.addEventListener("click", function () {
      showTab("list");
      var entry = items[r.id];
      if (entry) {
        entry.li.scrollIntoView({block: "center"});
        entry.li.querySelector(".item-title").focus();
      }
    });
    box.appendChild(b);
    return box;
  }
  function addMarker(entry) {
    var r = entry.r;
    var m = L.marker([r.lat, r.lon], {icon: icon(r), title: title(r), keyboard: true});
    m.reportId = r.id;
    m.bindPopup(popup(r));
    m.on("click", function () { select(r.id); });
    entry.marker = m;
    markers.addLayer(m);
  }

  function makeMap() {
    if (typeof L === "undefined") return;
    map = L.map("work-map", {zoomControl: true});
    if (data.tiles) {
      L.tileLayer(data.tiles, {attribution: data.attribution, maxZoom: 19}).addTo(map);
    }
    markers = L.layerGroup().addTo(map);
    Object.keys(items).forEach(function (id) { addMarker(items[id]); });
    map.setView([0, 0], 2);
  }

  function fit() {
    var points = Object.keys(items).map(function (id) {
      return [items[id].r.lat, items[id].r.lon];
    });
    if (points.length) map.fitBounds(points, {padding: [30, 30], maxZoom: 17});
  }

  // --- selecting: one item, marked in the list and on the map --------------------------

  function select(id) {
    var was = selected;
    selected = id;
    [was, id].forEach(function (one) {
      var entry = items[one];
      if (!entry) return;
      entry.li.classList.toggle("selected", one === selected);
      if (entry.marker) {
        entry.marker.setIcon(icon(entry.r));
        entry.marker.setZIndexOffset(one === selected ? 1000 : 0);
      }
    });
    var chosen = items[id];
    if (chosen && chosen.marker && map && !document.getElementById("map-panel").hidden) {
      map.setView(chosen.marker.getLatLng(), Math.max(map.getZoom(), 16));
      chosen.marker.openPopup();
    }
  }

  // --- tabs ------------------------------------------------------------------------------

  var tabs = {list: document.getElementById("tab-list"), map: document.getElementById("tab-map")};
  function showTab(name) {
    Object.keys(tabs).forEach(function (key) {
      var on = key === name;
      tabs[key].setAttribute("aria-selected", on ? "true" : "false");
      tabs[key].tabIndex = on ? 0 : -1;
      document.getElementById(key + "-panel").hidden = !on;
    });
    if (name === "map" && map) {
      map.invalidateSize();
      if (!fitted) {
        fit();
        fitted = true;
      }
      if (selected !== null && items[selected]) select(selected);
    }
    if (name === "list" && selected !== null && items[selected]) {
      items[selected].li.scrollIntoView({block: "center"});
    }
  }
  Object.keys(tabs).forEach(function (key) {
    tabs[key].addEventListener("click", function () { showTab(key); });
    tabs[key].addEventListener("keydown", function (event) {
      if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
        var other = key === "list" ? "map" : "list";
        showTab(other);
        tabs[other].focus();
      }
    });
  });

  // --- moving a report -------------------------------------------------------------------

  function ask(text, yes) {
    var dialog = document.getElementById("confirm-dialog");
    document.getElementById("confirm-text").textContent = text;
    dialog.returnValue = "";
    dialog.addEventListener("close", function () {
      if (dialog.returnValue === "confirm") yes();
    }, {once: true});
    dialog.showModal();
  }

  function move(id, to) {
    var r = items[id].r;
    if (data.confirm.indexOf(to) >= 0) {
      // Ending a report tells its reporter: ask first, in the page, as the buttons sit close.
      ask(fill(l.confirm_move, {id: id, status: statusWords(to)}), function () { send(id, to); });
    } else {
      send(id, to);
    }
    return r;
  }

  function busy(li, on) {
    li.classList.toggle("busy", on);
    Array.prototype.forEach.call(li.querySelectorAll(".moves button"), function (b) {
      b.disabled = on;
    });
  }

  function send(id, to) {
    var entry = items[id], li = entry.li;
    var form = new FormData();
    form.append("status", to);
    ["note", "public_note"].forEach(function (name) {
      var field = li.querySelector("[name=" + name + "]");
      if (field && field.value) form.append(name, field.value);
    });
    var photo = li.querySelector("input[type=file]");
    if (photo && photo.files.length) form.append("photo", photo.files[0]);
    li.querySelector(".item-error").hidden = true;
    busy(li, true);
    moving[id] = true;
    call("POST", "/api/reports/" + id + "/status", form).then(function (body) {
      delete moving[id];
      var late = known[id] > body.event_id;
      heard(id, body.event_id);
      // Sent with this move: the next move starts with empty notes and no photo. The move's
      // own live event may have drawn the item afresh before this answer came, so the item
      // emptied is the one on the page now, not the one the move was sent from.
      var shown = items[id] ? items[id].li : li;
      Array.prototype.forEach.call(shown.querySelectorAll("details.more textarea, details.more input"),
        function (field) { field.value = ""; });
      var more = shown.querySelector("details.more");
      if (more) more.open = false;
      if (late) {
        // A later change (a colleague's) reached the page first and is what it shows, or,
        // if it ended the work, takes the item out of the queue; this move is no longer the
        // report's latest, so it cannot be undone.
        if (items[id] && !isOpen(items[id].r.status)) remove(id);
        if (items[id]) busy(items[id].li, false);
        say(fill(l.moved, {id: id, status: statusWords(body.status)}));
        return;
      }
      var r = items[id] ? items[id].r : entry.r;
      var from = r.status;
      r.status = body.status;
      r.next = body.next_statuses || [];
      r.overdue = overdue(r);
      if (!items[id]) add(r);
      if (!isOpen(r.status)) {
        // Ended: shown as such until the undo window closes, then gone from the queue.
        clearTimeout(ended[id]);
        ended[id] = setTimeout(function () {
          if (items[id] && !isOpen(items[id].r.status)) remove(id);
        }, data.undo_s * 1000);
      }
      redraw(id);
      counted();
      say(fill(l.moved, {id: id, status: statusWords(r.status)}), function () {
        undo(id, body.event_id, from);
      });
    }, function (error) {
      delete moving[id];
      // Ended by someone else while this move was on its way (see applyReport): out of the queue.
      if (items[id] && !isOpen(items[id].r.status)) remove(id);
      if (items[id]) {
        busy(items[id].li, false);
        failed(error, items[id].li);
      } else {
        failed(error);
      }
    });
  }

  function heard(id, eventId) {
    if (eventId && !(known[id] >= eventId)) known[id] = eventId;
  }

  function stale(event) {
    return Boolean(event.event_id && known[event.id] > event.event_id);
  }

  function undo(id, eventId, from) {
    call("POST", "/api/reports/" + id + "/status/" + eventId + "/undo").then(function (body) {
      heard(id, body.event_id);
      clearTimeout(ended[id]);
      delete ended[id];
      var entry = items[id];
      if (!entry) return;
      var r = entry.r;
      r.status = body.status;
      r.next = data.actions ? body.next_statuses || [] : [];
      r.overdue = overdue(r);
      redraw(id);
      counted();
      say(fill(l.undone, {id: id, status: statusWords(r.status || from)}));
    }, function (error) { failed(error); });
  }

  // --- forwarding to another team ------------------------------------------------------

  function forward(id) {
    var dialog = document.getElementById("forward-dialog");
    var choice = document.getElementById("forward-team");
    var reason = document.getElementById("forward-reason");
    var problem = document.getElementById("forward-problem");
    document.getElementById("forward-title").textContent = fill(l.forward_title, {id: id});
    choice.textContent = "";
    data.teams.forEach(function (team) {
      var option = el("option", undefined, team.name);
      option.value = team.code;
      choice.appendChild(option);
    });
    reason.value = "";
    problem.hidden = true;
    dialog.returnValue = "";
    dialog.addEventListener("close", function () {
      if (dialog.returnValue !== "forward") return;
      var team = data.teams.filter(function (t) { return t.code === choice.value; })[0];
      call("POST", "/api/reports/" + id + "/forward",
           {team: choice.value, reason: reason.value}).then(function () {
        remove(id);
        say(fill(l.forwarded, {id: id, team: team ? team.name : choice.value}));
      }, function (error) { failed(error, items[id] && items[id].li); });
    }, {once: true});
    dialog.showModal();
  }

  // --- live updates (live.js) ---------------------------------------------------------------

  function arrived(id) {
    if (fetching[id]) return;
    fetching[id] = true;
    call("GET", "/api/reports/" + id).then(function (body) {
      delete fetching[id];
      if (!data.team || body.team_id !== data.team.id) return;
      var r = {
        id: body.id, lat: body.lat, lon: body.lon, category: body.category,
        category_name: data.lang === "th" ? body.category_name_th : body.category_name_en,
        description: body.description || "", address: body.address || "",
        status: body.status, created_at: body.created_at, due_at: body.due_at,
        overdue: false, photo_ids: body.photo_ids || [],
        next: data.actions ? (data.transitions[body.status] || []).slice() : []
      };
      r.overdue = overdue(r);
      if (matches(r)) add(r);
    }, function () { delete fetching[id]; });
  }

  function applyReport(event) {
    if (event.kind !== "report" || stale(event)) return;
    heard(event.id, event.event_id);
    var entry = items[event.id];
    var ours = data.team !== null && event.team_id === data.team.id;
    if (!ours || !isOpen(event.status)) {
      // Forwarded away, or ended by someone else: out of this queue. A move of one's own
      // that ended the work stays, undoable, until its window closes. While a move of one's
      // own awaits its answer, the event may be that move's: the item shows it and stays,
      // and the answer settles it (send).
      if (entry && ours && moving[event.id]) {
        entry.r.status = event.status;
        entry.r.next = [];
        redraw(event.id);
        counted();
      } else if (entry && !(ended[event.id] && entry.r.status === event.status)) {
        remove(event.id);
      }
      return;
    }
    if (!entry) {
      arrived(event.id);
      return;
    }
    var r = entry.r;
    clearTimeout(ended[event.id]);
    delete ended[event.id];
    r.status = event.status;
    r.category = event.category;
    r.lat = event.lat;
    r.lon = event.lon;
    r.due_at = event.due_at;
    r.next = data.actions ? (data.transitions[event.status] || []).slice() : [];
    r.overdue = overdue(r);
    if (!matches(r)) {
      remove(event.id);
      return;
    }
    redraw(event.id);
    if (entry.marker) entry.marker.setLatLng([r.lat, r.lon]);
    counted();
  }

  // --- start ---------------------------------------------------------------------------

  data.items.forEach(function (r) {
    var entry = {r: r, li: render(r), marker: null};
    items[r.id] = entry;
    list.appendChild(entry.li);
  });
  makeMap();
  counted();
  window.issuemap = Object.assign(window.issuemap || {}, {
    map: map, markers: markers, work: items, select: select, showTab: showTab,
    applyReport: applyReport, liveUrl: "/api/live",
    openStatuses: data.open_statuses,
    liveNotice: {text: l.live_stale, reload: l.live_reload}
  });
})();
