// runq ui: live updates and forms. Written here, no dependencies, nothing fetched from
// elsewhere. Values are only ever inserted as text (textContent) or as HTML the server
// rendered with autoescape.
(function () {
  "use strict";
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var live = document.body.dataset.live || "";
  var flash = document.getElementById("flash");
  var TERMINAL = ["COMPLETED", "FAILED", "CANCELLED", "CRASHED"];

  function say(text, isError) {
    flash.textContent = text;
    flash.className = isError ? "error" : "ok";
    flash.hidden = false;
    clearTimeout(say.timer);
    say.timer = setTimeout(function () { flash.hidden = true; }, isError ? 15000 : 4000);
  }

  // ---- refreshing the parts of the page that changed ----
  // A part marked data-rows (the Work Queues table) is refreshed row by row: an event
  // for a queue on this page re-fetches that queue's row only, an event for a queue on
  // another page fetches nothing. Other parts (and ticks, reconnects) re-fetch whole.
  var timer = null, busy = false, again = false, whole = false, rows = {};
  function scheduleRefresh(queue) {
    if (queue === undefined) whole = true;
    else rows[queue] = true;
    if (timer) return;
    timer = setTimeout(function () { timer = null; refresh(); }, 100);
  }
  function editing(element) {
    var active = document.activeElement;
    return active && element.contains(active) && (active.tagName === "INPUT" || active.tagName === "SELECT");
  }
  function rowOf(table, name) {
    var found = table.querySelectorAll("tr[data-" + table.dataset.rows + "]");
    for (var i = 0; i < found.length; i++) {
      if (found[i].dataset[table.dataset.rows] === name) return found[i];
    }
    return null;
  }
  // Whether a queue not shown could belong on this page (created, or renamed into it).
  function mayShow(table, name) {
    var first = table.dataset.first, last = table.dataset.last;
    if (!first) return table.dataset.firstPage === "1";
    return (table.dataset.firstPage === "1" || name >= first) &&
      (table.dataset.lastPage === "1" || name <= last);
  }
  function onChange(queue) {
    if (live !== "*" && queue && queue !== live) return;
    var table = document.querySelector("[data-rows]");
    if (!table || !queue) { scheduleRefresh(); return; }
    if (rowOf(table, queue)) scheduleRefresh(queue);
    else if (mayShow(table, queue)) scheduleRefresh();
  }
  async function fetchPart(part, params) {
    var url = new URL(location.href);
    url.searchParams.set("fragment", part);
    for (var i = 0; i < params.length; i++) url.searchParams.append(params[i][0], params[i][1]);
    var response = await fetch(url, { credentials: "same-origin" });
    if (response.status === 401) { location.reload(); return null; }  // session over: log in
    return response.ok ? await response.text() : null;
  }
  async function refreshRows(names) {
    var table = document.querySelector("[data-rows]");
    if (!table || !names.length) return;
    var key = table.dataset.rows, wanted = [];
    for (var i = 0; i < names.length; i++) {
      var row = rowOf(table, names[i]);
      if (row && editing(row)) { table.parentNode.dataset.stale = "1"; continue; }
      if (row) wanted.push([key, names[i]]);
    }
    if (!wanted.length) return;
    var html = await fetchPart(key + "_rows", wanted);
    if (html === null) return;
    var fresh = document.createElement("tbody");
    fresh.innerHTML = html;
    for (var j = 0; j < wanted.length; j++) {
      var old = rowOf(table, wanted[j][1]), updated = rowOf(fresh, wanted[j][1]);
      if (!old) continue;
      if (updated) old.replaceWith(updated); else old.remove();  // deleted meanwhile
    }
  }
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var all = whole, names = Object.keys(rows);
    whole = false; rows = {};
    try {
      if (all) {
        var parts = document.querySelectorAll("[data-fragment]");
        for (var i = 0; i < parts.length; i++) {
          var part = parts[i];
          if (editing(part)) { part.dataset.stale = "1"; continue; }
          var html = await fetchPart(part.dataset.fragment, []);
          if (html !== null) { part.innerHTML = html; delete part.dataset.stale; }
        }
      } else {
        await refreshRows(names);
      }
      followLogs();
    } catch (error) {
      setLive(false);
    } finally {
      busy = false;
      if (again || whole || Object.keys(rows).length) {
        again = false;
        if (timer === null) timer = setTimeout(function () { timer = null; refresh(); }, 100);
      }
    }
  }
  document.addEventListener("focusout", function (event) {
    var part = event.target.closest && event.target.closest("[data-fragment][data-stale]");
    if (part) setTimeout(function () { scheduleRefresh(); }, 200);
  });

  function setLive(on) {
    var dot = document.getElementById("live-status");
    if (dot) { dot.className = on ? "live-on" : "live-off"; dot.title = on ? "live" : "reconnecting"; }
  }

  function connect() {
    if (!window.EventSource || !live) return;
    var first = true;
    var source = new EventSource("/api/events");
    source.addEventListener("hello", function () {
      setLive(true);
      if (!first) scheduleRefresh();  // reconnected: catch up on what was missed
      first = false;
    });
    source.addEventListener("change", function (event) {
      onChange(JSON.parse(event.data).queue);
    });
    source.addEventListener("tick", function () { scheduleRefresh(); });
    source.onerror = function () { setLive(false); };  // EventSource retries by itself
  }

  // ---- forms: POST to the JSON API, say what happened ----
  document.addEventListener("submit", async function (event) {
    var form = event.target;
    var action = form.dataset.action;
    if (!action) return;
    event.preventDefault();
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    var data = {};
    try {
      var response = await fetch(action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        headers: { "X-CSRF-Token": csrf, "Accept": "application/json" },
        credentials: "same-origin",
      });
      try { data = await response.json(); } catch (ignored) { data = {}; }
      if (!response.ok) { say(data.error || ("HTTP " + response.status), true); return; }
    } catch (error) {
      say("The runq ui server did not answer: " + error.message, true);
      return;
    }
    say(form.dataset.done || "Done", false);
    var target = form.dataset.redirect;
    if (target === "run" && data.id) location.href = "/flow-runs/" + encodeURIComponent(data.id);
    else if (target) location.href = target;
    else { form.reset(); scheduleRefresh(); }
  });

  // ---- a run's logs, streamed while it runs ----
  var logs = document.getElementById("logs");
  var after = "0", pulling = false;
  function runEnded() {
    var run = document.getElementById("run");
    return run && TERMINAL.indexOf(run.dataset.state) >= 0;
  }
  async function pull() {
    var ended = runEnded();  // read before the pull: lines written before the end are all read
    try {
      var response = await fetch("/api/flow-runs/" + encodeURIComponent(logs.dataset.run) +
        "/logs?after=" + encodeURIComponent(after), { credentials: "same-origin" });
      if (response.ok) {
        var lines = await response.json();
        for (var i = 0; i < lines.length; i++) {
          logs.append(lines[i].message + "\n");
          after = lines[i].id;
        }
        if (lines.length) logs.scrollTop = logs.scrollHeight;
      }
    } catch (ignored) { /* the next pull retries */ }
    if (ended) { pulling = false; return; }
    setTimeout(pull, 1000);
  }
  function followLogs() {
    if (logs && !pulling) { pulling = true; pull(); }
  }

  followLogs();
  connect();
})();
