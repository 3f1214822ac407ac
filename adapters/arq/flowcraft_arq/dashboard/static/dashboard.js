// flowcraft dashboard: live regions over Server-Sent Events, polling when SSE is unavailable.
// A region names its endpoint in data-live; each message is JSON with any of:
//   html          new inner HTML of the region (rendered and escaped by the server)
//   nodes         {node id: {state, label}} patched into the SVG graph in place
//   status        the run's status badge
//   actions_key / actions_html   the action forms, replaced only when they change
//   final         nothing will change any more (the run ended): stop listening
(function () {
  "use strict";
  var POLL_MS = 2000;

  function cssEscape(s) {
    return window.CSS && CSS.escape ? CSS.escape(s) : String(s).replace(/["\\]/g, "\\$&");
  }

  function setState(el, state) {
    el.setAttribute("class", (el.getAttribute("class") || "").replace(/\bst-[a-z]+\b/, "st-" + state));
    el.setAttribute("data-state", state);
  }

  function patchNodes(nodes) {
    Object.keys(nodes).forEach(function (id) {
      var info = nodes[id];
      var el = document.querySelector('[data-node="' + cssEscape(id) + '"]');
      if (!el || el.getAttribute("data-state") === info.state) {
        if (el) { updateLabel(el, info); }
        return;
      }
      setState(el, info.state);
      var text = el.querySelector("[data-state-text]");
      if (text) { text.textContent = info.state; }
      updateLabel(el, info);
    });
  }

  function updateLabel(el, info) {
    var label = el.querySelector("[data-label]");
    if (!label) { return; }
    var prefix = el.getAttribute("data-kind") !== "task" ? " \u00b7 " : "";
    label.textContent = info.label ? prefix + info.label : "";
  }

  function apply(region, data) {
    if (data.html !== undefined) {
      var checked = {};
      region.querySelectorAll("input[type=checkbox][name=run_id]:checked").forEach(function (box) {
        checked[box.value] = true;
      });
      region.innerHTML = data.html;
      region.querySelectorAll("input[type=checkbox][name=run_id]").forEach(function (box) {
        if (checked[box.value]) { box.checked = true; }
      });
    }
    if (data.nodes) { patchNodes(data.nodes); }
    if (data.status) {
      document.querySelectorAll("[data-run-status]").forEach(function (badge) {
        badge.textContent = data.status;
        setState(badge, data.status);
      });
    }
    var actions = document.getElementById("actions");
    if (actions && data.actions_key !== undefined && actions.getAttribute("data-key") !== data.actions_key) {
      actions.setAttribute("data-key", data.actions_key);
      actions.innerHTML = data.actions_html || "";
    }
  }

  function poll(region, url) {
    var sep = url.indexOf("?") >= 0 ? "&" : "?";
    function tick() {
      fetch(url + sep + "once=1", { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (data) { apply(region, data); }
          return data && data.final;
        })
        .catch(function () { return false; })
        .then(function (final) { if (!final) { setTimeout(tick, POLL_MS); } });
    }
    region.setAttribute("data-live-mode", "poll");
    setTimeout(tick, POLL_MS);
  }

  function connect(region) {
    var url = region.getAttribute("data-live");
    if (!window.EventSource || region.hasAttribute("data-poll")) { poll(region, url); return; }
    var failures = 0;
    var source = new EventSource(url);
    region.setAttribute("data-live-mode", "sse");
    source.onmessage = function (event) {
      failures = 0;
      var data = JSON.parse(event.data);
      apply(region, data);
      if (data.final) { source.close(); }
    };
    source.onerror = function () {
      failures += 1;
      if (failures >= 3) { source.close(); poll(region, url); }
    };
  }

  function selectAll(event) {
    if (!event.target.classList || !event.target.classList.contains("select-all")) { return; }
    var form = event.target.closest("form");
    form.querySelectorAll("input[type=checkbox][name=run_id]").forEach(function (box) {
      box.checked = event.target.checked;
    });
  }

  document.addEventListener("change", selectAll);
  document.querySelectorAll("[data-live]").forEach(connect);
})();
