// The console's only script: calls the JSON API with fetch (relative URLs, so it works under
// a route prefix), and builds every piece of text with textContent: nothing received is ever
// parsed as HTML. Its words come from the page (`data-i18n`, in the page's language), and it
// shows times in the page's time zone (`data-tz`).
"use strict";

let WORDS = {};
// A word of the page's language, `{name}` replaced from `vars`.
function T(key, vars) {
  let s = WORDS[key] || key;
  for (const [k, v] of Object.entries(vars || {})) s = s.split("{" + k + "}").join(String(v));
  return s;
}

// An RFC 3339 instant as `2026-12-07 02:29:19` in the page's time zone (named in the footer).
function localTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return String(iso);
  const tz = document.body.dataset.tz || "UTC";
  const p = {};
  for (const x of new Intl.DateTimeFormat("en-CA", { timeZone: tz, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" }).formatToParts(d)) p[x.type] = x.value;
  return p.year + "-" + p.month + "-" + p.day + " " + p.hour + ":" + p.minute + ":" + p.second;
}

function timeEl(iso) {
  return el("time", { datetime: String(iso || "") }, localTime(iso));
}

// `YYYY-MM-DDTHH:MM` read as a wall-clock time in the page's time zone → an RFC 3339 instant.
function zonedInstant(local) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(local || "");
  if (!m) return null;
  const asUtc = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]);
  // The zone's offset near that time, found by formatting the guess back (twice, for DST).
  let t = asUtc;
  for (let i = 0; i < 2; i++) {
    const shown = localTime(new Date(t).toISOString()).replace(" ", "T") + "Z";
    t = t + (asUtc - Date.parse(shown));
  }
  return new Date(t).toISOString();
}

const api = (path) => "../api/v1/" + path;

async function call(path, body) {
  const init = body === undefined
    ? { credentials: "same-origin" }
    : { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const r = await fetch(api(path), init);
  let data = null;
  try { data = await r.json(); } catch (_) { data = { error: r.status + " " + r.statusText }; }
  if (!r.ok) {
    const e = new Error(data && data.error ? data.error : String(r.status));
    e.data = data;
    throw e;
  }
  return data;
}

// Control and bidi characters (from alerts, upstream errors) shown as \u{…}: received text
// cannot reorder, hide or recolour what a reader sees. Line breaks and tabs stay.
const INERT = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
function inert(s) {
  return String(s).replace(INERT, (c) => "\\u{" + c.codePointAt(0).toString(16) + "}");
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(inert(c)));
  }
  return e;
}

function showError(msg) {
  const p = document.getElementById("error");
  if (!p) return;
  p.hidden = !msg;
  p.textContent = inert(msg || "");
}

function status(msg) {
  const p = document.getElementById("status");
  if (p) p.textContent = inert(msg || "");
}

// A small markdown reading, as WxPusher's page shows it: headings, bold, lists, links as text.
function markdown(text) {
  const box = el("div", { class: "bubble markdown" });
  for (const line of text.split("\n")) {
    const h = /^(#{1,6})\s+(.*)$/.exec(line);
    const item = /^\s*[-*]\s+(.*)$/.exec(line);
    const node = h ? el("h" + Math.min(6, h[1].length + 2)) : item ? el("li") : el("div");
    inline(node, h ? h[2] : item ? item[1] : line);
    if (!h && !item && line.trim() === "") node.append(el("br"));
    box.append(node);
  }
  return box;
}

function inline(node, text) {
  const parts = text.split(/(\*\*[^*]+\*\*)/);
  for (const p of parts) {
    if (p.startsWith("**") && p.endsWith("**") && p.length > 4) node.append(el("strong", {}, p.slice(2, -2)));
    else node.append(document.createTextNode(inert(p)));
  }
}

// WeCom markdown: headings, quotes, **bold**, `code`, links as text, and
// <font color="info|comment|warning"> shown as colour; any other tag dropped.
function wecomInline(node, text) {
  for (const piece of text.split(/(\*\*[^*]+\*\*)/)) {
    const bold = piece.length > 4 && piece.startsWith("**") && piece.endsWith("**");
    const target = bold ? el("strong") : node;
    const inner = bold ? piece.slice(2, -2) : piece;
    for (const part of inner.split(/(<font color="[a-z]+">[^<]*<\/font>|`[^`]+`)/)) {
      const f = /^<font color="([a-z]+)">([^<]*)<\/font>$/.exec(part);
      if (f) target.append(el("span", { class: f[1] }, f[2]));
      else if (part.length > 2 && part.startsWith("`") && part.endsWith("`")) target.append(el("code", {}, part.slice(1, -1)));
      else target.append(document.createTextNode(inert(part.replace(/<[^>]*>/g, "").replace(/\[([^\]]*)\]\([^)]*\)/g, "$1"))));
    }
    if (bold) node.append(target);
  }
}

function wecomMarkdown(text) {
  const box = el("div", { class: "bubble markdown" });
  for (const line of text.split("\n")) {
    const h = /^(#{1,6})\s+(.*)$/.exec(line);
    const q = /^>\s?(.*)$/.exec(line);
    const node = h ? el("h" + Math.min(6, h[1].length + 2)) : el("div", q ? { class: "quote" } : {});
    const body = h ? h[2] : q ? q[1] : line;
    wecomInline(node, body);
    if (!h && body.trim() === "") node.append(el("br"));
    box.append(node);
  }
  return box;
}

function appName(kind) {
  if (kind === "official_account") return T("mp_app");
  if (kind === "wecom_robot") return T("robot_app");
  if (kind === "wecom_app") return T("work_app");
  return T("wechat");
}

function phone(item) {
  const p = item.preview;
  const wecom = item.kind === "wecom_robot" || item.kind === "wecom_app";
  const lock = el("div", { class: "lock" },
    el("div", { class: "app" }, appName(item.kind)),
    el("div", { class: "preview-line", "data-chars": String(p.line_chars) }, p.line));
  const chat = el("div", { class: "chat" });
  if (p.card && p.card.length) {
    const dl = el("dl", { class: "card" });
    for (const [k, v] of p.card) dl.append(el("dt", {}, k), el("dd", {}, v));
    chat.append(dl);
  } else if (p.parts && p.parts.length) {
    p.parts.forEach((t, i) => {
      const b = wecom && p.format === "markdown" ? wecomMarkdown(t) : el("div", { class: "bubble" }, t);
      b.classList.add("part");
      b.dataset.part = String(i + 1);
      chat.append(b);
    });
  } else if (wecom && p.format === "markdown") {
    chat.append(wecomMarkdown(p.body));
  } else if (p.format === "markdown") {
    chat.append(markdown(p.body));
  } else {
    chat.append(el("div", { class: "bubble" }, p.body));
  }
  if (p.url) chat.append(el("div", { class: "note" }, T("opens") + " " + p.url));
  return el("div", { class: "phone" }, lock, chat);
}

function renderResults(items) {
  const box = document.getElementById("results");
  box.replaceChildren();
  if (!items.length) box.append(el("p", { class: "note" }, T("no_integration")));
  for (const item of items) {
    const reqs = el("details", {}, el("summary", {}, T("requests", { n: item.requests.length })));
    for (const r of item.requests) {
      const body = typeof r.body === "string" ? r.body : JSON.stringify(r.body, null, 2);
      reqs.append(el("pre", { class: "request" }, r.method + " " + r.url + "\n\n" + body));
    }
    box.append(el("article", { class: "integration", "data-kind": item.kind },
      el("h2", {}, item.receiver + " · " + item.integration),
      phone(item), reqs));
  }
}

function templatesValue() {
  const out = {};
  for (const row of document.querySelectorAll(".template")) {
    const name = row.querySelector("input").value.trim();
    if (name) out[name] = row.querySelector("textarea").value;
  }
  return out;
}

function addTemplate(name, text) {
  const row = el("div", { class: "template" },
    el("label", {}, T("template_name") + " ", el("input", { value: name || "", placeholder: "wxpusher.summary" })),
    el("label", {}, T("template_text") + " ", el("textarea", { rows: "4", spellcheck: "false" })));
  row.querySelector("textarea").value = text || "";
  row.addEventListener("input", schedule);
  document.getElementById("templates").append(row);
}

let timer = null;
function schedule() {
  clearTimeout(timer);
  timer = setTimeout(render, 300);
}

async function render() {
  const text = document.getElementById("payload").value.trim();
  if (!text) return;
  let payload;
  try { payload = JSON.parse(text); } catch (e) { showError("payload: " + e.message); return; }
  const body = { payload, templates: templatesValue() };
  const receiver = document.getElementById("receiver").value;
  if (receiver) body.receiver = receiver;
  status(T("rendering"));
  try {
    const data = await call("render", body);
    showError("");
    renderResults(data.items);
    status(T("rendered", { n: data.items.length }));
  } catch (e) {
    const d = e.data || {};
    const where = d.template ? " (" + T("in_template") + " " + d.template + (d.line ? ", " + T("line") + " " + d.line : "") + (d.column ? ", " + T("column") + " " + d.column : "") + ")" : "";
    showError(e.message + where);
    status("");
  }
}

async function initPlayground() {
  const pick = document.getElementById("example");
  const payload = document.getElementById("payload");
  const payloads = [];
  try {
    const ex = await call("examples");
    const group = el("optgroup", { label: T("examples") });
    for (const x of ex.items) { payloads.push(x.payload); group.append(el("option", { value: String(payloads.length - 1) }, x.name)); }
    pick.append(group);
    const recent = await call("deliveries?limit=20");
    const rg = el("optgroup", { label: T("recent") });
    for (const d of recent.items) {
      if (!d.notification) continue;
      payloads.push(d.notification);
      rg.append(el("option", { value: String(payloads.length - 1) }, "#" + d.id + " " + d.receiver + " · " + d.alertnames.join(", ") + " · " + localTime(d.accepted_at)));
    }
    if (rg.children.length) pick.append(rg);
  } catch (e) { showError(e.message); }
  pick.addEventListener("change", () => {
    const i = pick.value;
    if (i === "") return;
    payload.value = JSON.stringify(payloads[Number(i)], null, 2);
    render();
  });
  payload.addEventListener("input", schedule);
  document.getElementById("receiver").addEventListener("change", render);
  document.getElementById("render").addEventListener("click", render);
  document.getElementById("add-template").addEventListener("click", () => addTemplate());
  document.getElementById("send-test").addEventListener("click", async () => {
    const receiver = document.getElementById("receiver").value;
    if (!receiver) { showError(T("choose_receiver")); return; }
    if (!confirm(T("confirm_send", { r: receiver }))) return;
    try {
      const r = await call("send-test", { receiver });
      showError(r.ok ? "" : r.items.join("\n"));
      status(r.items.join(" · "));
    } catch (e) { showError(e.message); }
  });
}

function initDeadLetters() {
  const act = async (question, path, done) => {
    if (!confirm(question)) return;
    try {
      const r = await call(path, {});
      status(done(r));
      location.reload();
    } catch (e) { showError(e.message); }
  };
  for (const b of document.querySelectorAll("button.replay")) {
    b.addEventListener("click", () => act(T("confirm_replay", { id: b.dataset.id }), "deadletters/" + b.dataset.id + "/replay", (r) => T("requeued", { n: r.replayed })));
  }
  const all = document.getElementById("replay-all");
  if (all) all.addEventListener("click", () => act(T("confirm_replay_all"), "deadletters/replay", (r) => T("requeued", { n: r.replayed })));
  const purge = document.getElementById("purge");
  if (purge) purge.addEventListener("click", () => act(T("confirm_purge"), "deadletters/purge", (r) => T("deleted", { n: r.purged })));
}

// On call: add an override ("cover for me until …") and delete one, through the API.
function initOnCall() {
  const form = document.getElementById("cover");
  if (form) form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    const end = zonedInstant(f.get("until"));
    if (!end) { showError(T("pick_until")); return; }
    const body = { person: f.get("person"), start: new Date().toISOString(), end };
    if (f.get("replaces")) body.replaces = f.get("replaces");
    try {
      await call("schedules/" + encodeURIComponent(f.get("schedule")) + "/overrides", body);
      status(T("added"));
      location.reload();
    } catch (e) { showError(e.message); }
  });
  for (const b of document.querySelectorAll("button.delete-override")) {
    b.addEventListener("click", async () => {
      if (!confirm(T("confirm_delete"))) return;
      try {
        const r = await fetch(api("schedules/" + encodeURIComponent(b.dataset.schedule) + "/overrides/" + b.dataset.id), { method: "DELETE", credentials: "same-origin" });
        if (!r.ok) throw new Error(r.status + " " + r.statusText);
        location.reload();
      } catch (e) { showError(e.message); }
    });
  }
}

// Incidents: listed from GET /api/v1/incidents; the buttons post the acts. Where the API is
// not there (404, 501), an empty state says so.
function incidentCard(i) {
  const state = String(i.state || "");
  const head = el("h2", {}, el("strong", {}, i.ref || i.id), " ",
    el("span", { class: "state state-" + state }, T(state)), " ", el("span", { class: "note" }, i.receiver || ""));
  const dl = el("dl", {});
  const row = (k, v) => { if (v !== null && v !== undefined && v !== "") dl.append(el("dt", {}, T(k)), el("dd", {}, v)); };
  row("opened", i.opened_at ? timeEl(i.opened_at) : null);
  row("policy", i.policy);
  row("step", i.step === undefined ? null : String(i.step));
  row("acknowledged_by", i.acknowledged_by ? el("span", {}, i.acknowledged_by, " · ", timeEl(i.acknowledged_at)) : null);
  row("next_escalation", i.next_escalation_at ? timeEl(i.next_escalation_at) : null);
  row("resolved_at", i.resolved_at ? timeEl(i.resolved_at) : null);
  const card = el("article", { class: "incident", "data-id": String(i.id), "data-state": state }, head, dl);
  const tl = Array.isArray(i.timeline) ? i.timeline : [];
  if (tl.length) {
    const ol = el("ol", { class: "timeline" });
    for (const e of tl) ol.append(el("li", {}, timeEl(e.at), " ", el("strong", {}, e.event || ""),
      e.person ? " · " + e.person : "", e.contact ? " · " + e.contact : "", e.detail ? " · " + e.detail : ""));
    card.append(el("details", {}, el("summary", {}, T("timeline") + " (" + tl.length + ")"), ol));
  }
  if (state !== "resolved") {
    const buttons = el("div", { class: "buttons" });
    const act = (what, question, body) => {
      const b = el("button", { type: "button", class: "act-" + what }, T(what));
      b.addEventListener("click", async () => {
        if (!confirm(T(question, { ref: i.ref || i.id }))) return;
        try {
          await call("incidents/" + encodeURIComponent(i.id) + "/" + what, body);
          status(T("done"));
          loadIncidents();
        } catch (e) { showError(e.message); }
      });
      buttons.append(b);
    };
    if (state === "triggered") act("ack", "confirm_ack", {});
    act("escalate", "confirm_escalate", i.step === undefined ? {} : { from_step: i.step });
    act("resolve", "confirm_resolve", {});
    card.append(buttons);
  }
  return card;
}

async function loadIncidents() {
  const box = document.getElementById("incidents");
  const sel = document.querySelector("#incident-filter select");
  const q = sel && sel.value ? "?state=" + encodeURIComponent(sel.value) : "";
  let data;
  try {
    const r = await fetch(api("incidents" + q), { credentials: "same-origin" });
    if (r.status === 404 || r.status === 405 || r.status === 501) {
      box.replaceChildren(el("p", { class: "note empty", id: "unavailable" }, T("incidents_unavailable")));
      status("");
      return;
    }
    data = await r.json();
    if (!r.ok) throw new Error(data && data.error ? data.error : String(r.status));
  } catch (e) { showError(e.message); status(""); return; }
  const items = Array.isArray(data.items) ? data.items : [];
  box.replaceChildren(...(items.length ? items.map(incidentCard) : [el("p", { class: "note empty", id: "empty" }, T("no_incidents"))]));
  status("");
}

function initIncidents() {
  const sel = document.querySelector("#incident-filter select");
  if (sel) sel.addEventListener("change", loadIncidents);
  loadIncidents();
}

// A cut value (`.cut`) is shown whole when tapped (or focused from the keyboard).
function initCuts() {
  for (const c of document.querySelectorAll(".cut")) c.addEventListener("click", () => c.classList.toggle("open"));
}

document.addEventListener("DOMContentLoaded", () => {
  initCuts();
  try { WORDS = JSON.parse(document.body.dataset.i18n || "{}"); } catch (_) { WORDS = {}; }
  const page = document.body.dataset.page;
  if (page === "playground") initPlayground();
  if (page === "deadletters") initDeadLetters();
  if (page === "oncall") initOnCall();
  if (page === "incidents") initIncidents();
});
