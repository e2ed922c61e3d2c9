// DOM and HTTP helpers shared by every page.
//
// Everything the dashboard shows comes from merchants (order fields, callback answers) or from
// requests anyone can send, so text only ever reaches the page through text nodes: `h` never
// sets inner HTML, and attributes are limited to a fixed set of names.

const ATTRIBUTES = new Set([
  "class", "id", "href", "type", "value", "placeholder", "name", "title", "for", "role",
  "aria-label", "aria-live", "colspan", "min", "max", "size", "autocomplete",
]);

// h("td", {class: "x"}, "text", child, [more]) -> Element. Strings become text nodes.
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key.startsWith("data-")) {
      node.setAttribute(key, String(value));
    } else if (key === "checked" || key === "disabled" || key === "selected") {
      node[key] = Boolean(value);
    } else if (ATTRIBUTES.has(key)) {
      if (key === "href" && !String(value).startsWith("#")) continue; // only our own routes
      node.setAttribute(key, String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else if (child instanceof Node) node.appendChild(child);
    else node.appendChild(document.createTextNode(String(child)));
  }
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? `${body.code || status}: ${body.message}` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// fetch JSON from the sandbox; rejects with ApiError on a non-2xx answer.
export async function api(path, {method = "GET", body} = {}) {
  const init = {method, cache: "no-store", headers: {Accept: "application/json"}};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = {message: text.slice(0, 200)}; }
  if (!response.ok) throw new ApiError(response.status, data);
  return {data, text};
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "" && value !== false) {
      search.set(key, String(value));
    }
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// A view that re-fetches on every tick and redraws only when the answer changed, so polling
// does not disturb a reader (or a click) while nothing happens.
export function live(fetcher, draw, onError) {
  let last = null;
  return {
    async refresh(force = false) {
      try {
        const {data, text} = await fetcher();
        if (force || text !== last) {
          last = text;
          draw(data);
        }
      } catch (error) {
        if (onError) onError(error);
        else throw error;
      }
    },
  };
}

export function table(columns, rows, rowClass) {
  return h("table", {class: "grid"},
    h("thead", null, h("tr", null, columns.map((c) => h("th", null, c.title)))),
    h("tbody", null, rows.map((row) => h("tr", {class: rowClass ? rowClass(row) : null},
      columns.map((c) => h("td", {class: c.cls || null}, c.cell(row)))))));
}

export function badge(text, kind) {
  return h("span", {class: `badge ${kind || String(text || "").toLowerCase()}`}, text ?? "—");
}

export function fen(amount) {
  return amount === null || amount === undefined ? "—" : `¥${(amount / 100).toFixed(2)}`;
}

// "2024-05-20T13:29:35+08:00" -> "2024-05-20 13:29:35" (sandbox times are CST, +08:00)
export function when(text) {
  return text ? text.replace("T", " ").replace(/\+08:00$/, "") : "—";
}

export function link(route, text) {
  return h("a", {href: `#/${route}`}, text ?? "—");
}

export function clip(text, max = 120) {
  if (text === null || text === undefined) return "";
  const s = String(text);
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

let toastTimer = null;

export function toast(message, kind = "info") {
  const box = document.getElementById("toast");
  box.className = `toast ${kind}`;
  box.textContent = message;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.className = "toast hidden"; }, 6000);
}

// Run an action from a button: disable it meanwhile, report the outcome, then refresh.
export async function act(button, action, done) {
  button.disabled = true;
  try {
    const message = await action();
    toast(message || "done", "ok");
    if (done) await done();
  } catch (error) {
    toast(error.message, "error");
  } finally {
    button.disabled = false;
  }
}

export function field(label, control) {
  return h("label", {class: "field"}, h("span", null, label), control);
}

export function select(name, options, current) {
  return h("select", {name},
    options.map(([value, text]) => h("option", {value, selected: value === (current || "")},
      text)));
}

// Keyset paging: `before` is the cursor of the page shown; "Newer" walks back up the stack.
export function pages() {
  const stack = [];
  let before = null;
  return {
    get before() { return before; },
    buttons(next, refresh) {
      return [
        h("button", {type: "button", class: "newer", disabled: !stack.length, onclick: () => {
          before = stack.pop() ?? null;
          refresh();
        }}, "← Newer"),
        h("button", {type: "button", class: "older", disabled: !next, onclick: () => {
          stack.push(before);
          before = next;
          refresh();
        }}, "Older →"),
      ];
    },
  };
}
