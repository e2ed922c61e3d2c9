// The dashboard's shell: hash routes, the sandbox clock, and the 2-second polling loop.

import {api, act, h} from "./dom.js";
import {faultsPage} from "./faults.js";
import {notificationsPage} from "./notifications.js";
import {orderPage, ordersPage} from "./orders.js";
import {requestsPage} from "./requests.js";
import {userPage, usersPage} from "./users.js";

const POLL_MS = 2000;

// #/orders?state=DOING -> {path: ["orders"], params: URLSearchParams}
function parseRoute() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, search] = raw.split("?", 2);
  return {path: path.split("/").filter(Boolean).map(decodeURIComponent),
          params: new URLSearchParams(search || "")};
}

function pageFor({path, params}) {
  const [name, id] = path;
  switch (name || "orders") {
    case "orders": return id ? orderPage(Number(id)) : ordersPage(params);
    case "requests": return requestsPage(params);
    case "notifications": return notificationsPage(params);
    case "users": return id ? userPage(id) : usersPage(params);
    case "faults": return faultsPage(params);
    default: return {node: h("p", {class: "empty"}, "No such page."), refresh: async () => {}};
  }
}

let current = null;

function route() {
  const where = parseRoute();
  const section = where.path[0] || "orders";
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.page === section);
  }
  current = pageFor(where);
  document.getElementById("main").replaceChildren(current.node);
  tick(true);
}

function setStatus(text, kind) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = `status ${kind}`;
}

async function refreshClock() {
  const {data} = await api("/sandbox/clock");
  document.getElementById("clock-now").textContent = cst(data.now_us);
  const offset = Math.round(data.offset_s);
  const notes = [];
  if (data.frozen) notes.push("frozen");
  if (offset) notes.push(`${offset > 0 ? "+" : ""}${formatSeconds(offset)} from wall time`);
  document.getElementById("clock-note").textContent = notes.join(" · ");
}

// sandbox microseconds -> "2024-05-20 13:29:35" in China Standard Time (UTC+8, no DST)
function cst(us) {
  const shifted = new Date(Math.floor(us / 1000) + 8 * 3600 * 1000);
  return shifted.toISOString().slice(0, 19).replace("T", " ");
}

function formatSeconds(s) {
  const sign = s < 0 ? "-" : "";
  let rest = Math.abs(s);
  const parts = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]]) {
    if (rest >= size) { parts.push(`${Math.floor(rest / size)}${unit}`); rest %= size; }
  }
  return sign + (parts.join("") || "0s");
}

let busy = false;

async function tick(force = false) {
  if (busy && !force) return;
  if (document.visibilityState === "hidden" && !force) return;
  busy = true;
  const page = current;
  try {
    await Promise.all([refreshClock(), page.refresh(force)]);
    setStatus(`live · updated ${new Date().toLocaleTimeString()}`, "ok");
  } catch (error) {
    setStatus(`cannot reach the sandbox: ${error.message}`, "error");
  } finally {
    busy = false;
  }
}

function setupClock() {
  const form = document.getElementById("clock-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const by = document.getElementById("clock-by").value.trim();
    const button = document.getElementById("clock-advance");
    act(button, async () => {
      const {data} = await api("/sandbox/clock/advance", {method: "POST", body: {by}});
      return `clock advanced by ${by}; ${data.jobs_run} timed job(s) ran`;
    }, () => tick(true));
  });
}

window.addEventListener("hashchange", route);
document.addEventListener("visibilitychange", () => tick(true));
setupClock();
route();
setInterval(() => tick(false), POLL_MS);
