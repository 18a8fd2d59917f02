// The console's only script: calls the JSON API with fetch (relative URLs, so it works under
// a route prefix), and builds every piece of text with textContent: nothing received is ever
// parsed as HTML.
"use strict";

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

function phone(item) {
  const p = item.preview;
  const lock = el("div", { class: "lock" },
    el("div", { class: "app" }, item.kind === "official_account" ? "WeChat · Official Account" : "WeChat"),
    el("div", { class: "preview-line", "data-chars": String(p.line_chars) }, p.line));
  const chat = el("div", { class: "chat" });
  if (p.card && p.card.length) {
    const dl = el("dl", { class: "card" });
    for (const [k, v] of p.card) dl.append(el("dt", {}, k), el("dd", {}, v));
    chat.append(dl);
  } else if (p.parts && p.parts.length) {
    p.parts.forEach((t, i) => chat.append(el("div", { class: "bubble part", "data-part": String(i + 1) }, t)));
  } else if (p.format === "markdown") {
    chat.append(markdown(p.body));
  } else {
    chat.append(el("div", { class: "bubble" }, p.body));
  }
  if (p.url) chat.append(el("div", { class: "note" }, "opens " + p.url));
  return el("div", { class: "phone" }, lock, chat);
}

function renderResults(items) {
  const box = document.getElementById("results");
  box.replaceChildren();
  if (!items.length) box.append(el("p", { class: "note" }, "No integration gets this notification (route tree, send_resolved)."));
  for (const item of items) {
    const reqs = el("details", {}, el("summary", {}, item.requests.length + " upstream request(s), secrets masked"));
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
    el("label", {}, "Name ", el("input", { value: name || "", placeholder: "wxpusher.summary" })),
    el("label", {}, "Text ", el("textarea", { rows: "4", spellcheck: "false" })));
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
  status("rendering…");
  try {
    const data = await call("render", body);
    showError("");
    renderResults(data.items);
    status("rendered " + data.items.length + " integration(s) · nothing was sent");
  } catch (e) {
    const d = e.data || {};
    const where = d.template ? " (template " + d.template + (d.line ? ", line " + d.line : "") + (d.column ? ", column " + d.column : "") + ")" : "";
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
    const group = el("optgroup", { label: "examples/" });
    for (const x of ex.items) { payloads.push(x.payload); group.append(el("option", { value: String(payloads.length - 1) }, x.name)); }
    pick.append(group);
    const recent = await call("deliveries?limit=20");
    const rg = el("optgroup", { label: "recently stored" });
    for (const d of recent.items) {
      if (!d.notification) continue;
      payloads.push(d.notification);
      rg.append(el("option", { value: String(payloads.length - 1) }, "#" + d.id + " " + d.receiver + " · " + d.alertnames.join(", ") + " · " + d.accepted_at));
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
    if (!receiver) { showError("choose a receiver to send a test message to"); return; }
    if (!confirm("Send a one-line test message to every integration of " + receiver + "? This really sends.")) return;
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
    b.addEventListener("click", () => act("Replay dead letter " + b.dataset.id + "?", "deadletters/" + b.dataset.id + "/replay", (r) => "re-queued " + r.replayed));
  }
  const all = document.getElementById("replay-all");
  if (all) all.addEventListener("click", () => act("Replay every dead letter?", "deadletters/replay", (r) => "re-queued " + r.replayed));
  const purge = document.getElementById("purge");
  if (purge) purge.addEventListener("click", () => act("Delete every dead letter for good? This cannot be undone.", "deadletters/purge", (r) => "deleted " + r.purged));
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "playground") initPlayground();
  if (page === "deadletters") initDeadLetters();
});
