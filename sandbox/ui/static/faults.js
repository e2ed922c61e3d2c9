// Faults: what is armed, with its scope and trigger; arm one from the catalogue, disarm.

import {act, api, badge, field, h, live, query, select, table, when} from "./dom.js";

const OPERATIONS = ["", "create_service_order", "query_service_order", "cancel_service_order",
  "modify_service_order", "complete_service_order", "pay_service_order", "sync_service_order",
  "direct_complete_service_order"];

function scopeText(scope) {
  const parts = Object.entries(scope || {}).map(([k, v]) => `${k}=${v}`);
  return parts.length ? parts.join(", ") : "everything";
}

function triggerText(f) {
  const parts = [];
  parts.push(f.remaining === null ? "every call" : `next ${f.remaining} call(s)`);
  if (f.probability !== null) parts.push(`p=${f.probability}`);
  if (f.window) parts.push(`${when(f.window[0])} – ${when(f.window[1])}`);
  return parts.join(", ");
}

function armForm(catalogue, done) {
  const effects = catalogue.map((entry) => [entry.effect,
    `${entry.effect}${entry.summary ? ` — ${entry.summary}` : ""}`]);
  const effect = effects.length ? select("effect", effects)
    : h("input", {name: "effect", size: 24, placeholder: "effect, e.g. http_500"});
  const inputs = {
    operation: select("operation", OPERATIONS.map((op) => [op, op || "any operation"])),
    mchid: h("input", {name: "mchid", size: 12}),
    out_order_no: h("input", {name: "out_order_no", size: 16}),
    openid: h("input", {name: "openid", size: 20}),
    remaining: h("input", {name: "remaining", size: 4, value: "1", type: "number", min: 1}),
  };
  const params = h("input", {name: "params", size: 24, placeholder: '{"status": 503}'});
  const button = h("button", {type: "submit", id: "arm-fault"}, "Arm");
  const form = h("form", {class: "filters", id: "arm-form", autocomplete: "off"},
    field("Effect", effect), field("Operation", inputs.operation),
    field("Merchant", inputs.mchid), field("out_order_no", inputs.out_order_no),
    field("User", inputs.openid), field("Times (empty: always)", inputs.remaining),
    field("Params (JSON, optional)", params), button);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = {effect: effect.value.trim()};
    for (const [key, input] of Object.entries(inputs)) {
      const value = input.value.trim();
      if (value) body[key] = key === "remaining" ? Number(value) : value;
    }
    act(button, async () => {
      if (params.value.trim()) {
        try { body.params = JSON.parse(params.value); } catch {
          throw new Error("params must be a JSON object, e.g. {\"status\": 503}");
        }
      }
      const {data} = await api("/sandbox/faults", {method: "POST", body});
      return `armed ${body.effect}${data && data.id ? ` (#${data.id})` : ""}`;
    }, done);
  });
  return form;
}

export function faultsPage(params) {
  const activeOnly = params.get("active") === "true";
  const formHost = h("div", {id: "arm-host"});
  const body = h("div", {id: "faults-table"});
  const node = h("section", {class: "page"}, h("h2", null, "Faults"),
    h("p", null, h("a", {href: `#/faults${query({active: activeOnly ? "" : "true"})}`},
      activeOnly ? "show all faults" : "show armed faults only")),
    h("h3", null, "Arm a fault"), formHost, h("h3", null, "Faults"), body);
  let catalogueText = null;
  const view = live(() => api(`/sandbox/api/faults${query({active: activeOnly})}`), (data) => {
    const refresh = () => view.refresh(true);
    const text = JSON.stringify(data.catalogue);
    if (text !== catalogueText) {  // keep what the user typed unless the catalogue changed
      catalogueText = text;
      formHost.replaceChildren(armForm(data.catalogue, refresh));
    }
    body.replaceChildren(data.faults.length ? table([
      {title: "#", cell: (f) => f.id, cls: "num"},
      {title: "Effect", cell: (f) => [h("strong", null, f.effect), ` at ${f.hook}`]},
      {title: "Scope", cell: (f) => scopeText(f.scope)},
      {title: "Trigger", cell: triggerText},
      {title: "Taken", cell: (f) => f.taken, cls: "num"},
      {title: "State", cell: (f) => badge(f.active ? "armed" : "disarmed",
        f.active ? "armed" : "off")},
      {title: "Scenario", cell: (f) => f.scenario_id || ""},
      {title: "Armed at", cell: (f) => when(f.created), cls: "nowrap"},
      {title: "", cell: (f) => (f.active ? disarmButton(f, refresh) : null)},
    ], data.faults, () => "fault-row") : h("p", {class: "empty"}, "No faults armed."));
  });
  return {node, refresh: view.refresh};
}

function disarmButton(fault, done) {
  const button = h("button", {type: "button", class: "disarm"}, "Disarm");
  button.addEventListener("click", () => act(button, async () => {
    await api(`/sandbox/faults/${fault.id}`, {method: "DELETE"});
    return `disarmed fault #${fault.id}`;
  }, done));
  return button;
}
