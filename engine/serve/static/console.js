// Loopwise console: draws each /ui page from the JSON API, charts as inline SVG.
// No dependencies and nothing from another origin (the page's CSP allows 'self' only).
// Text always goes in through textContent, never innerHTML: user ids and report text
// cannot become markup.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const main = () => document.getElementById("main");
// The page's content (null entries, for sections a page does not have, are left out).
const show = (...kids) => main().replaceChildren(...kids.filter((k) => k !== null && k !== undefined));
let session = { name: "", scopes: [], csrf: null };

// ---- small helpers ------------------------------------------------------------------
function el(tag, attrs, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid !== null && kid !== undefined) node.append(kid instanceof Node ? kid : String(kid));
  }
  return node;
}

function svg(tag, attrs, ...kids) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const kid of kids.flat(Infinity)) if (kid) node.append(kid instanceof Node ? kid : String(kid));
  return node;
}

// Numbers as people read them: integers whole, others to 4 significant digits.
function fmt(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (typeof x !== "number") return String(x);
  return Number.isInteger(x) ? String(x) : String(Number(x.toPrecision(4)));
}
const pct = (x) => (x === null || x === undefined ? "–" : fmt(x * 100) + "%");
const ci = (pair) => (pair ? `[${fmt(pair[0])}, ${fmt(pair[1])}]` : "–");
const when = (ts) => (ts === null || ts === undefined ? "–"
  : new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19));

async function api(path, options) {
  const opts = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
  if (opts.method && opts.method !== "GET") opts.headers["X-CSRF-Token"] = session.csrf || "";
  const r = await fetch(path, opts);
  // 401 from the API, or a console path sent to sign-in (the session ended meanwhile)
  if (r.status === 401 || (r.redirected && new URL(r.url).pathname === "/ui/login")) { location.assign("/ui/login?next=" + encodeURIComponent(location.pathname)); throw new Error("signed out"); }
  const type = r.headers.get("content-type") || "";
  const body = type.includes("json") ? await r.json() : await r.text();
  return { status: r.status, ok: r.ok, body };
}

function table(headers, rows, attrs) {
  return el("table", attrs || {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((row) => el("tr", {}, row.map((c) => el("td", {}, c))))));
}

function figures(pairs, id) {  // a row of labelled numbers; data-key names each for tests
  return el("dl", { class: "figures", id }, pairs.map(([label, value, key]) =>
    el("div", { class: "figure" }, el("dt", {}, label), el("dd", { "data-key": key || label }, value))));
}

const section = (title, ...kids) => el("section", {}, el("h2", {}, title), ...kids);

// ---- charts -------------------------------------------------------------------------
// Horizontal bars: items [{label, value, key}]; negative values grow left of zero.
function barChart(items, attrs) {
  const width = 620, row = 22, left = 190, right = 70, plot = width - left - right;
  const lo = Math.min(0, ...items.map((d) => d.value)), hi = Math.max(0, ...items.map((d) => d.value));
  const span = hi - lo || 1, x = (v) => left + ((v - lo) / span) * plot;
  const height = items.length * row + 8;
  return svg("svg", Object.assign({ viewBox: `0 0 ${width} ${height}`, class: "chart bars", role: "img" }, attrs || {}),
    svg("line", { x1: x(0), x2: x(0), y1: 0, y2: height, class: "axis" }),
    items.map((d, i) => svg("g", { "data-key": d.key || d.label },
      svg("text", { x: left - 6, y: i * row + 16, class: "label", "text-anchor": "end" }, d.label),
      svg("rect", { x: Math.min(x(0), x(d.value)), y: i * row + 4, height: row - 8,
        width: Math.max(1, Math.abs(x(d.value) - x(0))), class: d.value < 0 ? "neg" : "pos" }),
      svg("text", { x: width - right + 6, y: i * row + 16, class: "value" }, fmt(d.value)))));
}

// Lines over time: series [{name, points: [[t, y]]}]; bands [{name, points: [[t, lo, hi]]}];
// marks [{t0, t1, label}] are shaded spans (drift windows); hline: a reference level.
function lineChart(series, opts) {
  const o = Object.assign({ width: 640, height: 220, bands: [], marks: [], hline: null, id: null }, opts || {});
  const pad = { l: 56, r: 12, t: 10, b: 28 }, w = o.width - pad.l - pad.r, h = o.height - pad.t - pad.b;
  const ts = [], ys = [];
  for (const s of series) for (const [t, y] of s.points) { ts.push(t); if (y !== null) ys.push(y); }
  for (const b of o.bands) for (const [t, a, c] of b.points) { ts.push(t); if (a !== null) ys.push(a); if (c !== null) ys.push(c); }
  for (const m of o.marks) ts.push(m.t0);  // a window may run past the data: clipped below
  if (o.hline !== null) ys.push(o.hline);
  if (!ts.length) return el("p", { class: "muted" }, "No data yet.");
  const t0 = Math.min(...ts), t1 = Math.max(...ts), y0 = Math.min(0, ...ys), y1 = Math.max(...ys, y0 + 1e-9);
  const X = (t) => pad.l + (t1 > t0 ? ((t - t0) / (t1 - t0)) * w : w / 2);
  const Y = (y) => pad.t + h - ((y - y0) / (y1 - y0)) * h;
  const path = (pts) => pts.filter((p) => p[1] !== null).map((p, i) => `${i ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join("");
  const chart = svg("svg", { viewBox: `0 0 ${o.width} ${o.height}`, class: "chart lines", role: "img", id: o.id || "" },
    o.marks.map((m) => svg("rect", { x: X(m.t0), width: Math.max(2, X(Math.min(m.t1, t1)) - X(m.t0)), y: pad.t, height: h, class: "mark" },
      svg("title", {}, m.label))),
    svg("line", { x1: pad.l, x2: pad.l, y1: pad.t, y2: pad.t + h, class: "axis" }),
    svg("line", { x1: pad.l, x2: pad.l + w, y1: Y(y0), y2: Y(y0), class: "axis" }),
    o.hline !== null ? svg("line", { x1: pad.l, x2: pad.l + w, y1: Y(o.hline), y2: Y(o.hline), class: "ref" }) : null,
    svg("text", { x: pad.l - 4, y: pad.t + 8, "text-anchor": "end", class: "tick" }, fmt(y1)),
    svg("text", { x: pad.l - 4, y: pad.t + h, "text-anchor": "end", class: "tick" }, fmt(y0)),
    svg("text", { x: pad.l, y: o.height - 8, class: "tick" }, when(t0)),
    svg("text", { x: pad.l + w, y: o.height - 8, "text-anchor": "end", class: "tick" }, when(t1)),
    o.bands.map((b, i) => {
      const pts = b.points.filter((p) => p[1] !== null && p[2] !== null);
      if (!pts.length) return null;
      const d = pts.map((p, j) => `${j ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[2]).toFixed(1)}`).join("")
        + pts.slice().reverse().map((p) => `L${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join("") + "Z";
      return svg("path", { d, class: `band s${i % 6}` }, svg("title", {}, b.name));
    }),
    series.map((s, i) => svg("path", { d: path(s.points), class: `line s${i % 6}`, "data-series": s.name },
      svg("title", {}, s.name))),
    series.map((s, i) => s.points.length > 60 ? null : s.points.filter((p) => p[1] !== null).map((p) =>
      svg("circle", { cx: X(p[0]).toFixed(1), cy: Y(p[1]).toFixed(1), r: 2.5, class: `dot s${i % 6}` }))));
  const legend = el("ul", { class: "legend" }, series.map((s, i) => el("li", { class: `s${i % 6}` }, s.name)),
    o.bands.map((b, i) => el("li", { class: `band s${i % 6}` }, b.name)));
  return el("figure", {}, chart, legend);
}

// ---- pages --------------------------------------------------------------------------
const PAGES = {};

PAGES.users = async () => {
  const input = el("input", { id: "user-search", type: "search", placeholder: "user id or its start", autocomplete: "off" });
  const found = el("ul", { id: "user-results", class: "results" });
  const form = el("form", { id: "user-form", class: "search" }, input, el("button", { type: "submit" }, "Open"));
  const list = async () => {
    const r = await api("/v1/users?limit=20&prefix=" + encodeURIComponent(input.value));
    found.replaceChildren(...r.body.users.map((u) =>
      el("li", {}, el("a", { href: "/ui/users/" + encodeURIComponent(u) }, u))));
  };
  form.addEventListener("submit", (e) => { e.preventDefault(); if (input.value) location.assign("/ui/users/" + encodeURIComponent(input.value)); });
  input.addEventListener("input", list);
  show(el("h1", {}, "Users"), form, found);
  await list();
};

PAGES.user = async () => {
  const userId = decodeURIComponent(location.pathname.split("/")[3]);
  const base = "/v1/users/" + encodeURIComponent(userId);
  const [profile, decisions, history] = await Promise.all([
    api("/v1/profiles/" + encodeURIComponent(userId)), api(base + "/decisions?limit=20"), api(base + "/history")]);
  const title = el("h1", {}, "User ", el("code", { id: "user-id" }, userId));
  if (profile.status === 404) {
    show(title, el("p", { id: "not-found", class: "notice" }, "Not found: Loopwise holds no profile for this user."));
    return;
  }
  const p = profile.body, eng = p.engagement || {};
  const interests = Object.entries(p.interests || {}).sort((a, b) => Math.abs(b[1]) - Math.abs(a[1])).slice(0, 15);
  const keywords = Object.entries(p.keywords || {}).sort((a, b) => b[1] - a[1]).slice(0, 15);
  const windows = (p.drift && p.drift.windows) || [];
  show(title,
    section("Engagement", figures([["events", fmt(eng.events), "events"], ["reward rate", fmt(eng.rate), "rate"],
      ["events per day", fmt(eng.events_per_day), "events_per_day"], ["last seen", when(eng.last_ts), "last_ts"],
      ["drift detections", fmt(p.drift ? p.drift.detections : 0), "detections"]], "engagement")),
    section("Top interests (topics and tags)", interests.length
      ? barChart(interests.map(([k, v]) => ({ label: k, value: v, key: k })), { id: "interests" }) : el("p", { class: "muted" }, "None yet.")),
    section("How interests changed (event log; shaded: detected shifts)",
      lineChart(Object.entries(history.body.series || {}).map(([k, ys]) => ({ name: k, points: history.body.times.map((t, i) => [t, ys[i]]) })),
        { id: "history", marks: windows.map((w) => ({ t0: w[0], t1: w[1] === null ? w[0] : w[1], label: "detected shift" })) })),
    section("Keyword interests", keywords.length ? table(["keyword", "weight"], keywords.map(([k, v]) => [k, fmt(v)]), { id: "keywords" }) : el("p", { class: "muted" }, "None.")),
    section("Declared attributes", Object.keys(p.attributes || {}).length
      ? table(["attribute", "value"], Object.entries(p.attributes).map(([k, v]) => [k, String(v)]), { id: "attributes" }) : el("p", { class: "muted" }, "None declared.")),
    section("Recent decisions", decisionTable(decisions.body.decisions)),
    session.scopes.includes("admin") ? eraseBox(userId) : null);
};

function decisionTable(rows) {
  if (!rows.length) return el("p", { class: "muted" }, "No decisions.");
  return table(["time", "decision", "candidates (probability)", "chosen", "reward", "variant", "policy version"],
    rows.map((d) => [when(d.ts), el("a", { href: "/ui/decisions/" + encodeURIComponent(d.decision_id) }, d.decision_id.slice(0, 12)),
      d.candidates.map((c) => el("span", { class: c.id === d.chosen ? "cand chosen" : "cand" }, `${c.id} ${fmt(c.probability)}`)),
      d.chosen, d.reward === null ? d.status : `${fmt(d.reward)} (${d.status})`, d.variant, String(d.policy_version)]),
    { id: "decisions" });
}

function eraseBox(userId) {
  const confirm = el("input", { id: "erase-confirm", placeholder: "type the user id to confirm", autocomplete: "off" });
  const go = el("button", { id: "erase-go", type: "button", class: "danger", disabled: "" }, "Erase for good");
  const out = el("p", { id: "erase-result" });
  const box = el("div", { id: "erase-form", hidden: "" }, el("p", {}, "This deletes the profile, events, decisions and rewards of this user. It cannot be undone."), confirm, go);
  const open = el("button", { id: "erase-open", type: "button", class: "danger" }, "Erase this user…");
  open.addEventListener("click", () => { box.hidden = false; confirm.focus(); });
  confirm.addEventListener("input", () => { go.disabled = confirm.value !== userId; });
  go.addEventListener("click", async () => {
    go.disabled = true;
    const r = await api("/v1/profiles/" + encodeURIComponent(userId), { method: "DELETE" });
    if (!r.ok) { out.textContent = `Refused: ${r.body.error ? r.body.error.reason : r.status}`; return; }
    await PAGES.user();
    main().append(el("p", { id: "erased", class: "notice" }, "Erased: " + Object.entries(r.body.deleted).map(([k, v]) => `${k} ${v}`).join(", ")));
  });
  return section("Erase", open, box, out);
}

PAGES.decision = async () => {
  const id = decodeURIComponent(location.pathname.split("/")[3]);
  const r = await api("/v1/decisions/" + encodeURIComponent(id));
  const title = el("h1", {}, "Why this item");
  if (r.status === 404) { show(title, el("p", { id: "not-found", class: "notice" }, "Not found: no decision with this id.")); return; }
  const d = r.body.decision, a = r.body.attribution;
  show(title,
    figures([["user", el("a", { href: "/ui/users/" + encodeURIComponent(d.user_id) }, d.user_id), "user"], ["chosen", d.chosen, "chosen"],
      ["variant", d.variant, "variant"], ["policy version", String(d.policy_version), "policy_version"], ["reward", d.reward === null ? d.status : fmt(d.reward), "reward"]], "decision"),
    a ? el("p", { id: "summary", class: "summary" }, a.summary) : el("p", { id: "summary", class: "notice" }, r.body.reason),
    a ? section("What pushed it up, per feature group (score minus the candidates' mean)",
      barChart(a.groups.map((g) => ({ label: g.group, value: g.contribution })), { id: "attribution" }),
      el("p", { class: "muted" }, `Score ${fmt(a.score)} against a candidate mean of ${fmt(a.mean_score)}; weights of policy version ${a.policy_version}.`)) : null,
    section("Candidates", table(["item", "probability", ""], d.candidates.map((c) => [c.id, fmt(c.probability), c.id === d.chosen ? "chosen" : ""]), { id: "candidates" })),
    a ? section("Features", table(["group", "feature", "value", "candidates' mean", "weight", "contribution"],
      a.groups.flatMap((g) => g.features.map((f) => [g.group, f.name, fmt(f.value), fmt(f.mean), fmt(f.weight), fmt(f.contribution)])), { id: "features" })) : null);
};

function parseMetrics(text) {  // Prometheus text -> {"name{labels}": value}
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return out;
}

PAGES.live = async () => {
  const [m, l] = await Promise.all([api("/metrics"), api("/v1/live?minutes=120")]);
  const metrics = parseMetrics(m.body), live = l.body;
  const get = (k) => metrics[k] || 0;
  const byVariant = (field) => live.variants.map((v) => ({ name: v, points: live.decisions.filter((r) => r.variant === v).map((r) => [r.minute, r[field]]) }));
  const statuses = [...new Set(live.rewards.map((r) => r.status))];
  show(el("h1", {}, "Live"),
    section("Since this server started (the numbers /metrics exposes)",
      table(["variant", "decisions", "policy version", "drift detections"], live.variants.map((v) => [v,
        fmt(get(`loopwise_decisions_total{variant="${v}"}`)), fmt(get(`loopwise_policy_version{variant="${v}"}`)),
        fmt(get(`loopwise_policy_drift_detections{variant="${v}"}`))]), { id: "metrics-variants" }),
      figures(["joined", "late", "default", "duplicate"].map((s) => [`${s} rewards`, fmt(get(`loopwise_rewards_total{status="${s}"}`)), s]), "metrics-rewards")),
    section("All time (decision log)", figures(Object.entries(live.reward_totals).map(([s, n]) => [`${s} rewards`, fmt(n), s]), "store-rewards")),
    section("Decisions per minute", lineChart(byVariant("decisions"), { id: "decisions-per-minute" })),
    section("Reward reports per minute", lineChart(statuses.map((s) => ({ name: s, points: live.rewards.filter((r) => r.status === s).map((r) => [r.minute, r.count]) })), { id: "rewards-per-minute" })),
    section("Mean learned reward per minute", lineChart(byVariant("mean_reward"), { id: "mean-reward" })));
};

// The challenger's rollout (GET /v1/rollout), where one is configured: its state, the
// off-policy gate and the online comparison, and every step with its reason.
function rolloutSection(ro) {
  const s = ro.settings, off = ro.off_policy, on = ro.online;
  return section("Rollout", figures([
    ["state", ro.state, "state"], ["challenger's share", pct(ro.share), "share"],
    ["champion", ro.champion, "champion"], ["challenger", s.challenger.policy, "challenger"],
    ["off-policy gain", `${fmt(off.difference)} ${ci([off.low, off.high])}`, "off_policy"],
    ["online difference", on.difference === null ? "– (not serving yet)" : `${fmt(on.difference)} ${ci([on.low, on.high])}`, "online"],
  ], "rollout"), el("p", { class: "muted" }, `Steps ${s.steps.map(pct).join(" → ")}; promoted while the off-policy gain's lower bound is above ${fmt(s.margin)}; rolled back when the online test shows the challenger worse.`),
  table(["time", "step", "share", "reason"], ro.history.map((e) => [when(e.ts), e.event, pct(e.share), e.reason]), { id: "rollout-steps" }));
}

PAGES.experiments = async () => {
  const h = await api("/v1/experiments/history");  // says what there is: no 404s asked for
  const [r, ro] = await Promise.all([h.body.ab ? api("/v1/experiments/report") : null,
    h.body.rollout ? api("/v1/rollout") : null]);
  const title = el("h1", {}, "Experiments");
  const rollout = ro ? rolloutSection(ro.body) : null;
  if (!r) { show(title, rollout || el("p", { id: "not-found", class: "notice" }, "No A/B test or rollout is configured (one variant).")); return; }
  const rep = r.body, users = rep.srm ? rep.srm.observed || {} : {};
  const points = h.body.points || [];
  const names = Object.keys(rep.comparisons);
  show(title, rollout,
    section("Variants", table(["variant", "users", "decisions", "rewards learned", "mean reward", `${100 - rep.alpha * 100}% CI`, "lift vs " + rep.control, "lift CI", "always-valid p", "decision"],
      Object.entries(rep.variants).map(([v, s]) => {
        const c = rep.comparisons[v];
        return [v, fmt(users[v] || 0), fmt((h.body.decisions || {})[v] || 0), fmt(s.n), fmt(s.mean), ci(s.ci),
          c ? pct(c.lift) : "control", c ? `[${pct(c.lift_ci[0])}, ${pct(c.lift_ci[1])}]` : "", c ? fmt(c.sequential.p_value) : "", c ? c.decision : ""];
      }), { id: "variants" })),
    section("Sample-ratio check", el("p", { id: "srm", class: rep.srm && rep.srm.mismatch ? "notice" : "" },
      rep.srm ? `${rep.srm.mismatch ? "Mismatch" : "No mismatch"}: p = ${fmt(rep.srm.p_value)} (flagged below ${fmt(rep.srm.threshold)})` : "Not enough users.")),
    section("Always-valid p-value over time", lineChart(names.map((k) => ({ name: k, points: points.map((p) => [p.ts, p.comparisons[k].p_value]) })), { id: "pvalue", hline: rep.alpha })),
    section(`Confidence sequence of the difference vs ${rep.control}`, lineChart(names.map((k) => ({ name: `${k} difference`, points: points.map((p) => [p.ts, p.comparisons[k].diff]) })),
      { id: "confseq", hline: 0, bands: names.map((k) => ({ name: `${k} confidence sequence`, points: points.map((p) => [p.ts, ...p.comparisons[k].confidence_sequence]) })) })),
    rep.warnings.length ? section("Warnings", el("ul", {}, rep.warnings.map((w) => el("li", {}, w)))) : null);
};

PAGES.reports = async () => {
  const r = await api("/v1/reports");
  show(el("h1", {}, "Offline results"), r.body.reports.length
    ? table(["report", "kind", "written", "plots"], r.body.reports.map((x) => [el("a", { href: "/ui/reports/" + x.id }, x.title), x.kind, when(x.modified), String(x.plots.length)]), { id: "reports" })
    : el("p", { class: "muted" }, "No report.md found in the data directory or the results folder (loopwise serve --results-dir)."));
};

PAGES.report = async () => {
  const id = location.pathname.slice("/ui/reports/".length);
  const entry = (await api("/v1/reports")).body.reports.find((r) => r.id === decodeURIComponent(id));
  if (!entry) { show(el("p", { id: "not-found", class: "notice" }, "Not found: no such report.")); return; }
  const base = `/ui/files/${id}/`;
  const body = entry.markdown ? markdown((await api(base + "report.md")).body, base)
    : [el("h1", {}, entry.title), entry.plots.map((p) => el("img", { src: base + encodeURIComponent(p), alt: p, class: "plot" }))];
  show(el("article", { id: "report" }, body));
};

// Inline `code` and **bold** as nodes (still text only: no markup from the report).
function inline(text) {
  return text.split(/(`[^`]+`|\*\*[^*]+\*\*)/).filter((p) => p).map((p) =>
    /^`.+`$/.test(p) ? el("code", {}, p.slice(1, -1)) : /^\*\*.+\*\*$/.test(p) ? el("b", {}, p.slice(2, -2)) : p);
}

// A small Markdown subset as DOM: headings, tables, lists, code blocks, images, paragraphs.
function markdown(text, base) {
  const out = [], lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith("```")) {
      const code = [];
      while (++i < lines.length && !lines[i].startsWith("```")) code.push(lines[i]);
      out.push(el("pre", {}, code.join("\n")));
    } else if (/^#{1,4} /.test(line)) {
      out.push(el("h" + Math.min(4, line.indexOf(" ")), {}, inline(line.replace(/^#+ /, ""))));
    } else if (line.startsWith("|")) {
      const rows = [];
      for (; i < lines.length && lines[i].startsWith("|"); i++) rows.push(lines[i].split("|").slice(1, -1).map((c) => c.trim()));
      i--;
      out.push(table(rows[0], rows.slice(1).filter((r) => !r.every((c) => /^:?-+:?$/.test(c))).map((r) => r.map(inline))));
    } else if (/^!\[[^\]]*\]\([^)/]+\)/.test(line)) {
      const [, alt, src] = line.match(/^!\[([^\]]*)\]\(([^)]+)\)/);
      out.push(el("img", { src: base + encodeURIComponent(src), alt, class: "plot" }));
    } else if (/^[-*] /.test(line)) {
      const items = [];
      for (; i < lines.length && /^[-*] /.test(lines[i]); i++) items.push(el("li", {}, inline(lines[i].slice(2))));
      i--;
      out.push(el("ul", {}, items));
    } else if (line.trim()) {
      out.push(el("p", {}, inline(line)));
    }
  }
  return out;
}

async function start() {
  const page = document.body.dataset.page;
  const nav = { user: "users", decision: "users", report: "reports" }[page] || page;
  for (const a of document.querySelectorAll("[data-nav]")) if (a.dataset.nav === nav) a.classList.add("active");
  document.getElementById("signout").addEventListener("click", async () => {
    await api("/ui/logout", { method: "POST" });
    location.assign("/ui/login");
  });
  try {
    session = (await api("/ui/session")).body;
    document.getElementById("who").textContent = `${session.name} (${session.scopes.join(", ")})`;
    await PAGES[page]();
    document.body.dataset.ready = "1";
  } catch (err) {
    if (err.message !== "signed out") {
      show(el("p", { class: "notice", id: "failed" }, "This page could not be drawn: " + err.message));
      throw err;
    }
  }
}

document.addEventListener("DOMContentLoaded", start);
