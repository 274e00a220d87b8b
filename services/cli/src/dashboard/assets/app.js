"use strict";
// The dashboard page: renders the view the server streams (server-sent
// events), and asks the server for actions on the viewer's own ports.

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function span(secs) {
  if (secs === null || secs === undefined) return "-";
  if (secs < 60) return secs + "s";
  if (secs < 3600) return Math.floor(secs / 60) + "m";
  if (secs < 86400) return Math.floor(secs / 3600) + "h";
  return Math.floor(secs / 86400) + "d";
}

// A bar's filled part (set through the CSSOM: the page's CSP allows no inline style).
function fill(percent) {
  const node = el("div");
  node.style.width = Math.min(100, percent) + "%";
  return node;
}

function uptime(since) {
  return since ? span(Math.max(0, Math.floor((Date.now() - since) / 1000))) : "-";
}

// The view stays the same while nothing changes: uptimes count here.
setInterval(() => {
  for (const cell of document.querySelectorAll("td.up[data-since]")) cell.textContent = uptime(Number(cell.dataset.since));
}, 5000);

function portText(row) {
  return row.canonical_port ? `${row.canonical_port} → ${row.port}` : String(row.port);
}

async function act(kind, row) {
  if (kind === "stop" && !confirm(`Send SIGTERM to pid ${row.pid} (${row.name}, port ${row.port})?`)) return;
  const answer = await fetch(`/api/${kind}/${encodeURIComponent(row.lock_id)}`, {
    method: "POST", headers: { "X-Styxy-Action": "1" }, credentials: "same-origin",
  });
  const body = await answer.json().catch(() => ({ message: answer.statusText }));
  document.getElementById("status").textContent = body.message;
}

function serviceRow(row) {
  const actions = el("td", { class: "actions" });
  if (row.mine) {
    actions.append(el("button", { class: "release", onclick: () => act("release", row) }, "release"));
    actions.append(el("button", { class: "copy", onclick: () => navigator.clipboard.writeText(row.url) }, "copy URL"));
    if (row.can_stop) actions.append(el("button", { class: "stop", onclick: () => act("stop", row) }, "stop"));
  }
  return el("tr", { "data-lock-id": row.lock_id, "data-port": row.port },
    el("td", {}, row.name),
    el("td", { class: "port" }, el("a", { href: row.url, target: "_blank", rel: "noreferrer" }, portText(row))),
    el("td", {}, row.service_type),
    el("td", {}, el("span", { class: `state state-${row.state}` }, row.state)),
    el("td", {}, row.user),
    el("td", {}, row.pid ?? "-"),
    el("td", { class: "command" }, row.command ?? "-"),
    el("td", {}, row.session ?? "-"),
    el("td", { class: "up", "data-since": row.since ?? "" }, uptime(row.since)),
    actions);
}

const HEAD = ["service", "port", "type", "state", "user", "pid", "command", "session", "up", ""];

function render(view) {
  const projects = document.getElementById("projects");
  projects.replaceChildren(...view.projects.map(p => el("section", { class: "project" },
    el("h2", {}, p.project),
    ...p.scopes.map(s => el("div", { class: "scope" },
      s.scope === p.project ? null : el("h3", {}, s.scope),
      el("table", {}, el("tr", {}, ...HEAD.map(h => el("th", {}, h))), ...s.services.map(serviceRow)))))));
  if (!view.projects.length) projects.replaceChildren(el("p", {}, "No reserved ports."));

  document.getElementById("others").replaceChildren(
    el("tr", {}, ...["port", "address", "user", "pid", "command"].map(h => el("th", {}, h))),
    ...view.others.map(o => el("tr", { "data-port": o.port },
      el("td", { class: "port" }, el("a", { href: o.url, target: "_blank", rel: "noreferrer" }, String(o.port))),
      el("td", {}, o.addresses.join(" ")), el("td", {}, o.user), el("td", {}, o.pid ?? "-"),
      el("td", { class: "command" }, o.command ?? "-"))));

  document.getElementById("ranges").replaceChildren(...view.ranges.map(r => el("div", { class: "strip" },
    `${r.service_type} ${r.first}-${r.last} · ${r.used}/${r.size}`,
    el("div", { class: "bar" }, fill(100 * r.used / r.size)))));

  document.getElementById("recent").replaceChildren(...view.recent.slice().reverse().map(e => el("li", {},
    `${new Date(e.at).toLocaleTimeString()} ${e.kind} ${e.name} (${e.user}) `
    + (e.canonical_port ? `${e.canonical_port} → ${e.port}` : String(e.port)))));
}

function connect() {
  const events = new EventSource("/api/events");
  events.onmessage = message => {
    const view = JSON.parse(message.data);
    if (view.failure) {
      document.getElementById("status").textContent = "allocator: " + view.failure.message;
      return;
    }
    document.getElementById("status").textContent = "live";
    render(view);
  };
  events.onerror = () => { document.getElementById("status").textContent = "disconnected; retrying…"; };
}

connect();
