// Orders: the filterable list, and one order's timeline.

import {
  act, api, badge, clip, fen, field, h, link, live, pages, query, select, table, when,
} from "./dom.js";
import {attemptsTable, redeliverButton} from "./notifications.js";
import {verdictCell} from "./requests.js";

const STATES = [["", "any state"], ["CREATED", "CREATED"], ["DOING", "DOING"], ["DONE", "DONE"],
  ["REVOKED", "REVOKED"], ["EXPIRED", "EXPIRED"]];
const SINCE = [["", "any time"], ["1h", "last hour"], ["24h", "last 24 h"], ["7d", "last 7 days"],
  ["30d", "last 30 days"]];

let merchantsCache = null;

async function merchants() {
  if (!merchantsCache) {
    const {data} = await api("/sandbox/api/overview");
    merchantsCache = data.merchants;
  }
  return merchantsCache;
}

export function ordersPage(params) {
  const filters = {
    mchid: params.get("mchid") || "", state: params.get("state") || "",
    openid: params.get("openid") || "", since: params.get("since") || "",
    limit: params.get("limit") || "",
  };
  const paging = pages();

  const merchantSelect = select("mchid", [["", "any merchant"]], filters.mchid);
  merchants().then((list) => {
    for (const m of list) {
      merchantSelect.appendChild(h("option", {value: m.mchid, selected: m.mchid === filters.mchid},
        `${m.mchid} ${m.name}`));
    }
  }).catch(() => {});
  const form = h("form", {class: "filters", id: "order-filters", autocomplete: "off"},
    field("Merchant", merchantSelect),
    field("State", select("state", STATES, filters.state)),
    field("User (openid)", h("input", {name: "openid", value: filters.openid, size: 28})),
    field("Created", select("since", SINCE, filters.since)),
    h("button", {type: "submit"}, "Filter"));
  const apply = (event) => {
    if (event) event.preventDefault();
    const data = new FormData(form);
    location.hash = `#/orders${query(Object.fromEntries(data.entries()))}`;
  };
  form.addEventListener("submit", apply);
  form.addEventListener("change", (event) => { if (event.target.tagName === "SELECT") apply(); });

  const summary = h("p", {class: "summary"});
  const body = h("div", {id: "orders-table"});
  const pager = h("div", {class: "pager"});
  const node = h("section", {class: "page"}, h("h2", null, "Orders"), form, summary, body, pager);

  const view = live(
    () => api(`/sandbox/api/orders${query({...filters, before: paging.before})}`),
    (data) => {
      const total = data.count_capped ? `more than ${data.count}` : String(data.count);
      summary.textContent = `${total} order${data.count === 1 ? "" : "s"} match`;
      body.replaceChildren(data.orders.length ? ordersTable(data.orders)
        : h("p", {class: "empty"}, "No orders match these filters."));
      pager.replaceChildren(...paging.buttons(data.next_before, () => view.refresh(true)));
    });
  return {node, refresh: view.refresh};
}

function ordersTable(orders) {
  return table([
    {title: "Created", cell: (o) => when(o.created), cls: "nowrap"},
    {title: "out_order_no", cell: (o) => link(`orders/${o.pk}`, o.out_order_no)},
    {title: "Merchant", cell: (o) => o.mchid},
    {title: "State", cell: (o) => [badge(o.state), o.state_description
      ? h("span", {class: "muted"}, ` ${o.state_description}`) : null]},
    {title: "User", cell: (o) => o.openid ? link(`users/${encodeURIComponent(o.openid)}`,
      clip(o.openid, 32)) : "—"},
    {title: "Service", cell: (o) => o.service_introduction, cls: "merchant-text"},
    {title: "Risk fund", cell: (o) => fen(o.risk_amount), cls: "num"},
    {title: "Total", cell: (o) => fen(o.total_amount), cls: "num"},
  ], orders, () => "order-row");
}

export function orderPage(pk) {
  const head = h("div", {id: "order-detail"});
  const actions = h("div", {class: "actions", id: "order-actions"});
  const timeline = h("ol", {class: "timeline", id: "timeline"});
  const node = h("section", {class: "page"},
    h("p", null, link("orders", "← all orders")), head, actions,
    h("h3", null, "Timeline"), timeline);
  let shownState = null;
  const view = live(() => api(`/sandbox/api/orders/${pk}`), (data) => {
    head.replaceChildren(orderFacts(data.order));
    const state = `${data.order.state}/${data.order.state_description}/${data.order.total_amount}`;
    if (state !== shownState) {  // keep a half-typed openid while only the timeline moves
      shownState = state;
      actions.replaceChildren(...userActions(data.order, () => view.refresh(true)));
    }
    timeline.replaceChildren(...data.timeline.map((item) => timelineItem(item, view)));
  });
  return {node, refresh: view.refresh};
}

// The simulated user's moves that fit the order's state (POST /sandbox/users/<openid>/act).
function userActions(o, done) {
  const moves = o.state === "CREATED" ? [["confirm", "User confirms"], ["decline", "User declines"]]
    : o.state === "DOING" && o.total_amount !== null && o.collection_state !== "USER_PAID"
      ? [["pay", "User pays now"]] : [];
  if (!moves.length) return [];
  const who = h("input", {name: "openid", value: o.openid || "", size: 30,
    placeholder: "openid of the user", "aria-label": "openid"});
  const buttons = moves.map(([action, text]) => {
    const button = h("button", {type: "button", class: `act act-${action}`}, text);
    button.addEventListener("click", () => act(button, async () => {
      const openid = who.value.trim();
      if (!openid) throw new Error("which user? type an openid");
      await api(`/sandbox/users/${encodeURIComponent(openid)}/act`, {method: "POST",
        body: {action, mchid: o.mchid, out_order_no: o.out_order_no}});
      return `${openid}: ${action} on ${o.out_order_no} done`;
    }, done));
    return button;
  });
  return [h("span", {class: "label"}, "Simulated user:"), who, ...buttons];
}

function orderFacts(o) {
  const facts = [
    ["out_order_no", o.out_order_no], ["merchant", o.mchid], ["order_id", o.order_id],
    ["state", [badge(o.state), o.state_description ? ` ${o.state_description}` : ""]],
    ["collection", o.collection_state || "—"],
    ["user", o.openid ? link(`users/${encodeURIComponent(o.openid)}`, o.openid) : "—"],
    ["service_introduction", o.service_introduction], ["attach", o.attach ?? "—"],
    ["risk fund", fen(o.risk_amount)], ["total", fen(o.total_amount)],
    ["paid", fen(o.paid_amount)], ["need_user_confirm", String(o.need_user_confirm)],
    ["notify_url", o.notify_url || "—"], ["created", when(o.created)],
    ["updated", when(o.updated)],
  ];
  return h("div", null, h("h2", null, "Order ", h("code", null, o.out_order_no)),
    h("dl", {class: "facts"}, facts.map(([k, v]) => [h("dt", null, k),
      h("dd", {"data-field": k}, v)])));
}

function timelineItem(item, view) {
  const time = h("time", null, when(item.at));
  if (item.kind === "state") {
    return h("li", {class: "tl state"}, time, badge("state", "kind"),
      h("span", null, h("strong", null, item.event), " ",
        item.from_state ? `${item.from_state} → ` : "→ ", item.to_state || ""),
      item.detail ? h("code", {class: "detail"}, clip(JSON.stringify(item.detail), 200)) : null);
  }
  if (item.kind === "request") {
    return h("li", {class: `tl request ${item.status >= 400 ? "bad" : ""}`}, time,
      badge("request", "kind"),
      h("span", null, h("strong", null, item.method), " ", clip(item.path, 100), " → ",
        badge(String(item.status ?? "—"), item.status >= 400 ? "failed" : "ok"),
        item.code ? ` ${item.code}` : ""),
      verdictCell(item),
      item.fault ? h("div", {class: "fault"}, `fault taken: ${item.fault}`) : null);
  }
  return h("li", {class: "tl notification", "data-notification": item.id}, time,
    badge("callback", "kind"),
    h("span", null, h("strong", null, item.event_type), " → ", clip(item.url, 80), " ",
      badge(item.status), ` ${item.attempts} attempt${item.attempts === 1 ? "" : "s"}`,
      item.next_attempt ? h("span", {class: "muted"}, ` · next retry ${when(item.next_attempt)}`)
        : null),
    redeliverButton(item, () => view.refresh(true)),
    attemptsTable(item.attempt_log || []));
}
