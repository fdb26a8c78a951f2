// The dashboard: polls data (router_svc/dashboard.py's snapshot) and draws it with uPlot.
// window.dashboard.points(name) counts the plotted values of a chart (the browser test reads it).
"use strict";
(function () {
  const POLL_MS = 2000;
  const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                   "#7f7f7f", "#bcbd22", "#17becf"];
  const charts = {};
  const shapes = {};
  let updated = 0;

  function width(el) { return Math.max(el.clientWidth - 8, 320); }

  // A chart keyed by name, rebuilt only when its series change (an expert appears).
  function draw(name, labels, data, opts) {
    const el = document.getElementById("chart-" + name);
    const shape = labels.join("|");
    if (!charts[name] || shapes[name] !== shape) {
      if (charts[name]) charts[name].destroy();
      const series = [{}].concat(labels.map((label, i) => Object.assign(
        {label: label, stroke: COLOURS[i % COLOURS.length], width: 2, spanGaps: false,
         points: {show: true, size: 4}}, (opts.series || {})[label] || {})));
      charts[name] = new uPlot({
        width: width(el), height: 220, series: series,
        scales: Object.assign({x: {time: true}}, opts.scales || {}),
        axes: [{}, {size: 60, values: opts.values}],
        legend: {live: false},
      }, data, el);
      shapes[name] = shape;
    } else {
      charts[name].setData(data);
    }
  }

  function fmt(x, digits) {
    if (x === null || x === undefined) return "–";
    if (Math.abs(x) > 0 && Math.abs(x) < 0.01) return x.toExponential(2);
    return x.toFixed(digits === undefined ? 3 : digits);
  }

  function time(ms) { return new Date(ms).toLocaleTimeString(); }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function fill(id, rows, render) {
    const body = document.querySelector("#" + id + " tbody");
    body.replaceChildren(...rows.map(r => { const tr = document.createElement("tr"); render(tr, r); return tr; }));
  }

  function tiles(d) {
    const t = d.totals;
    const ratio = (t.cost !== null && t.premium_cost) ? t.cost / t.premium_cost : null;
    const items = [
      ["policy", d.policy || "–"], ["version", d.policy_version === null ? "–" : d.policy_version],
      ["decisions", t.decisions], ["premium share", t.premium_share === null ? "–" : (100 * t.premium_share).toFixed(0) + "%"],
      ["quality", fmt(t.quality)], ["always-premium quality (DR est.)", fmt(t.premium_quality)],
      ["cost / premium's", ratio === null ? "–" : (100 * ratio).toFixed(1) + "%"],
      ["fallbacks", t.fallbacks], ["failed calls", t.failures], ["dead letters", t.dead_letters],
    ];
    document.getElementById("tiles").replaceChildren(...items.map(([k, v]) => {
      const div = document.createElement("div");
      div.className = "tile";
      const b = document.createElement("b");
      b.textContent = String(v);
      div.append(b, document.createTextNode(k));
      return div;
    }));
  }

  function render(d) {
    const t = d.t;
    tiles(d);
    const experts = Object.keys(d.share);
    draw("traffic", experts, [t].concat(experts.map(e => d.share[e])),
         {scales: {y: {range: [0, 1]}}, values: (u, v) => v.map(x => (100 * x).toFixed(0) + "%")});
    draw("quality", ["router", "always-premium (DR estimate)"], [t, d.quality.router, d.quality.premium], {});
    draw("cost", ["router", "always-premium"], [t, d.cost.router, d.cost.premium], {
      values: (u, v) => v.map(x => fmt(x, 4))});
    const lat = ["expert_p50", "expert_p95", "expert_p99", "end_to_end_p50", "end_to_end_p95", "end_to_end_p99"];
    draw("latency", lat, [t].concat(lat.map(k => d.latency[k])), {});
    draw("errors", ["fallbacks", "failed calls", "dead letters"],
         [t, d.errors.fallbacks, d.errors.failures, d.errors.dead_letters], {});
    draw("version", ["policy version"], [t, d.policy_version_series], {});
    fill("recent", d.recent.slice(0, 10), (tr, r) => {
      cell(tr, time(r.ts_ms)); cell(tr, r.chosen); cell(tr, fmt(r.propensity, 2)); cell(tr, fmt(r.cost_weight, 2));
      cell(tr, r.policy_version);
      cell(tr, r.answered_by === null ? "…" : r.answered_by + (r.ok ? "" : " (failed)"), r.ok === false ? "bad" : "");
      cell(tr, fmt(r.latency_s, 2)); cell(tr, fmt(r.quality, 2)); cell(tr, fmt(r.cost, 5));
      const why = cell(tr, "", "why");
      for (const [name, s] of Object.entries(r.scores)) {
        const span = document.createElement("span");
        span.textContent = `${name} ${fmt(s.score)} = ${fmt(s.quality)} − λ·${fmt(s.cost, 5)} + ${fmt(s.bonus)}; p ${fmt(s.probability, 2)}`;
        if (name === r.chosen) span.className = "chosen";
        why.appendChild(span);
      }
    });
    fill("versions", d.versions.slice(-10).reverse(), (tr, v) => {
      cell(tr, v.version); cell(tr, time(v.ts_ms)); cell(tr, v.policy);
    });
    fill("letters", d.dead_letters, (tr, l) => {
      cell(tr, time(l.ts_ms)); cell(tr, l.source_topic); cell(tr, l.component); cell(tr, l.reason);
    });
  }

  async function poll() {
    const status = document.getElementById("status");
    try {
      // With auth on, an admin key: /dashboard/#key=<key> (the fragment never leaves the browser).
      const key = new URLSearchParams(location.hash.slice(1)).get("key");
      const resp = await fetch("data", {cache: "no-store", headers: key ? {authorization: "Bearer " + key} : {}});
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const d = await resp.json();
      render(d);
      window.dashboard.last = d;
      updated += 1;
      status.textContent = `live: window ${d.window_s / 60} min, buckets of ${d.bucket_s} s, updated ${time(d.now_ms)}`;
      status.className = "muted";
    } catch (err) {
      status.textContent = "not updating: " + err.message;
      status.className = "bad";
    }
    setTimeout(poll, POLL_MS);
  }

  window.addEventListener("resize", () => {
    for (const [name, c] of Object.entries(charts)) {
      c.setSize({width: width(document.getElementById("chart-" + name)), height: 220});
    }
  });

  window.dashboard = {
    charts: charts,
    last: null,
    updates: () => updated,
    points: name => {
      const c = charts[name];
      if (!c) return 0;
      return c.data.slice(1).reduce((n, ys) => n + ys.filter(y => y !== null && y !== undefined).length, 0);
    },
  };
  poll();
})();
