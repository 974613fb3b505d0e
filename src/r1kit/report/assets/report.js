(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var runSel = document.getElementById("sb-run"), setSel = document.getElementById("sb-set"),
      stepSel = document.getElementById("sb-step"), filterSel = document.getElementById("sb-filter"),
      list = document.getElementById("sb-list"), count = document.getElementById("sb-count");

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function num(x, d) { return (typeof x === "number") ? x.toFixed(d === undefined ? 3 : d) : "–"; }
  function option(sel, value, text) { var o = el("option", null, text); o.value = value; sel.appendChild(o); }
  function steps(run, set) {
    var bySet = (DATA.runs[run].samples || {})[set] || {};
    return Object.keys(bySet).map(Number).sort(function (a, b) { return a - b; });
  }

  function fillSets() {
    var run = Number(runSel.value), keep = setSel.value;
    setSel.textContent = "";
    var labels = {train: "training rollouts", eval: "evaluation", eval_no_think: "evaluation, think removed"};
    ["train", "eval", "eval_no_think"].forEach(function (set) {
      if (steps(run, set).length) option(setSel, set, labels[set]);
    });
    var known = Array.prototype.some.call(setSel.options, function (o) { return o.value === keep; });
    if (keep && known) setSel.value = keep;
  }
  function fillSteps() {
    var run = Number(runSel.value), set = setSel.value, keep = stepSel.value;
    stepSel.textContent = "";
    if (!set) return;
    var all = DATA.runs[run].samples[set];
    steps(run, set).forEach(function (s) {
      var rows = all[s], ok = rows.filter(function (r) { return r.ok === true; }).length;
      option(stepSel, s, "step " + s + " (" + rows.length + " shown, " + ok + " correct)");
    });
    if (keep && all[keep]) stepSel.value = keep;
    else if (stepSel.options.length) stepSel.value = stepSel.options[stepSel.options.length - 1].value;
  }
  function highlighted(text, spans) {
    var pre = el("pre"), at = 0;
    (spans || []).forEach(function (sp) {
      if (sp[0] > at) pre.appendChild(document.createTextNode(text.slice(at, sp[0])));
      pre.appendChild(el("mark", null, text.slice(sp[0], sp[1])));
      at = sp[1];
    });
    pre.appendChild(document.createTextNode(text.slice(at)));
    return pre;
  }
  function card(run, set, step, s) {
    var c = el("article", "sample " + (s.ok === true ? "correct" : s.ok === false ? "incorrect" : "unknown"));
    c.id = "s-" + run + "-" + set + "-" + step + "-" + s.i;
    var meta = el("div", "meta");
    var parts = ["#" + s.i, s.pid === undefined || s.pid === null ? "" : String(s.pid)];
    if (set === "train") {
      var fns = Object.keys(s.rs || {}).map(function (k) { return k + " " + num(s.rs[k], 2); }).join(", ");
      parts.push("reward " + num(s.r) + (fns ? " (" + fns + ")" : ""), "advantage " + num(s.adv));
    } else {
      parts.push("sample " + s.k, "extracted " + (s.x === null || s.x === undefined ? "–" : s.x),
                 "format " + (s.fmt ? "ok" : "bad"));
    }
    parts.push((s.len === undefined || s.len === null ? "?" : s.len) + " tokens");
    meta.textContent = parts.filter(Boolean).join(" · ");
    if (s.ok === true) meta.appendChild(el("span", "badge ok", "correct"));
    if (s.ok === false) meta.appendChild(el("span", "badge bad", "incorrect"));
    if (s.tr) meta.appendChild(el("span", "badge trunc", "truncated"));
    if (s.mk && s.mk.length) meta.appendChild(el("span", "badge", "reflects: " + s.mk.join(", ")));
    c.appendChild(meta);
    if (s.q !== undefined && s.q !== null) c.appendChild(el("div", "question", "Q: " + s.q));
    if (s.p) {
      var d = el("details");
      d.appendChild(el("summary", null, "prompt"));
      d.appendChild(el("pre", null, s.p));
      c.appendChild(d);
    }
    c.appendChild(el("div", "gold", "gold answer: " + (s.a === undefined || s.a === null ? "–" : s.a)));
    c.appendChild(highlighted(s.c || "", s.m));
    if (s.cut) c.appendChild(el("div", "muted", "… " + s.cut + " more characters not shown"));
    return c;
  }
  function render() {
    var run = Number(runSel.value), set = setSel.value, step = stepSel.value, filter = filterSel.value;
    list.textContent = "";
    var rows = (set && step) ? DATA.runs[run].samples[set][step] || [] : [];
    var shown = rows.filter(function (s) {
      return filter === "all" || (filter === "correct" ? s.ok === true : s.ok === false);
    });
    shown.forEach(function (s) { list.appendChild(card(run, set, step, s)); });
    count.textContent = shown.length + " of " + rows.length + " completions";
    if (!rows.length) list.appendChild(el("p", "muted", "No samples recorded for this run."));
  }
  function openHash() {
    var m = /^#s-(\d+)-(train|eval)-(\d+)-(\d+)$/.exec(window.location.hash);
    if (!m || !DATA.runs[Number(m[1])]) return;
    runSel.value = m[1]; fillSets(); setSel.value = m[2]; fillSteps(); stepSel.value = m[3];
    filterSel.value = "all"; render();
    var target = document.getElementById(window.location.hash.slice(1));
    if (target) { target.classList.add("target"); target.scrollIntoView(); }
  }
  DATA.runs.forEach(function (r, i) { option(runSel, i, r.name); });
  runSel.addEventListener("change", function () { fillSets(); fillSteps(); render(); });
  setSel.addEventListener("change", function () { fillSteps(); render(); });
  stepSel.addEventListener("change", render);
  filterSel.addEventListener("change", render);
  window.addEventListener("hashchange", openHash);
  fillSets(); fillSteps(); render(); openHash();
  document.body.setAttribute("data-ready", "1");
})();
