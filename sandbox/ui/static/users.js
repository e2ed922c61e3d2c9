// Users: look up a simulated user (score history, eligibility, risk tier) and make them act.

import {act, api, badge, fen, field, h, link, live, query, table, when} from "./dom.js";

export function usersPage(params) {
  const prefix = params.get("prefix") || "";
  const input = h("input", {name: "openid", value: prefix, size: 40,
    placeholder: "openid, or the start of one"});
  const form = h("form", {class: "filters", id: "user-lookup", autocomplete: "off"},
    field("User", input), h("button", {type: "submit"}, "Look up"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const openid = input.value.trim();
    try {
      await api(`/sandbox/api/users/${encodeURIComponent(openid)}`);
      location.hash = `#/users/${encodeURIComponent(openid)}`;
    } catch {  // not an exact openid: list the users it starts
      location.hash = `#/users${query({prefix: openid})}`;
    }
  });
  const body = h("div", {id: "users-table"});
  const node = h("section", {class: "page"}, h("h2", null, "Simulated users"), form, body);
  const view = live(() => api(`/sandbox/api/users${query({prefix})}`), (data) => {
    body.replaceChildren(data.users.length ? table([
      {title: "openid", cell: (u) => link(`users/${encodeURIComponent(u.openid)}`, u.openid)},
      {title: "Score", cell: (u) => u.score, cls: "num"},
      {title: "Magic", cell: (u) => u.magic || ""},
    ], data.users) : h("p", {class: "empty"},
      "No users start like that. Seed some: POST /sandbox/users/seed {\"count\": 1000}"));
  });
  return {node, refresh: view.refresh};
}

function actButton(openid, text, body, done) {
  const button = h("button", {type: "button", class: `act act-${body.action}`}, text);
  button.addEventListener("click", () => act(button, async () => {
    await api(`/sandbox/users/${encodeURIComponent(openid)}/act`, {method: "POST", body});
    return `${openid}: ${body.action}${body.out_order_no ? ` on ${body.out_order_no}` : ""} done`;
  }, done));
  return button;
}

export function userPage(openid) {
  const body = h("div", {id: "user-detail"});
  const node = h("section", {class: "page"}, h("p", null, link("users", "← all users")), body);
  const view = live(() => api(`/sandbox/api/users/${encodeURIComponent(openid)}`), (data) => {
    const refresh = () => view.refresh(true);
    const u = data.user;
    body.replaceChildren(
      h("h2", null, "User ", h("code", null, u.openid)),
      h("dl", {class: "facts"},
        h("dt", null, "score"), h("dd", {"data-field": "score"}, String(u.score)),
        h("dt", null, "eligible"), h("dd", {"data-field": "eligible"}, data.eligible
          ? badge("eligible", "ok") : [badge("not eligible", "failed"), ` ${data.reason}: `,
            data.reason_text || ""]),
        h("dt", null, "risk tier"), h("dd", {"data-field": "risk_tier"},
          badge(data.risk_tier, data.risk_tier === "NORMAL" ? "ok" : "failed"),
          ` · ${data.defaults_this_month} default(s) this month`),
        h("dt", null, "behaviour"), h("dd", null, `confirms: ${u.confirm_behaviour}, pays: `
          + `${u.balance_behaviour}, deductions set to fail: ${u.fail_next_deductions}`),
        h("dt", null, "overdue"), h("dd", null, fen(u.overdue_fen)),
        h("dt", null, "frozen until"), h("dd", null, when(u.frozen_until)),
        h("dt", null, "profile"), h("dd", null, `age ${u.age}, client ${u.client_version}, `
          + `real name ${u.real_name}, bank card ${u.bank_card}, face ${u.face_verified}`)),
      h("div", {class: "actions"},
        actButton(u.openid, "Fail next deduction", {action: "fail_next_deduction"}, refresh)),
      h("h3", null, "Orders"),
      data.orders.length ? table([
        {title: "Created", cell: (o) => when(o.created), cls: "nowrap"},
        {title: "out_order_no", cell: (o) => link(`orders/${o.pk}`, o.out_order_no)},
        {title: "Merchant", cell: (o) => o.mchid},
        {title: "State", cell: (o) => [badge(o.state), ` ${o.state_description || ""}`]},
        {title: "Make the user…", cell: (o) => [
          o.state === "CREATED" ? actButton(u.openid, "Confirm",
            {action: "confirm", mchid: o.mchid, out_order_no: o.out_order_no}, refresh) : null,
          o.state === "CREATED" ? actButton(u.openid, "Decline",
            {action: "decline", mchid: o.mchid, out_order_no: o.out_order_no}, refresh) : null,
          o.state === "DOING" && o.total_amount !== null ? actButton(u.openid, "Pay",
            {action: "pay", mchid: o.mchid, out_order_no: o.out_order_no}, refresh) : null,
        ]},
      ], data.orders) : h("p", {class: "empty"}, "No orders for this user yet."),
      h("h3", null, "Score history"),
      data.score_history.length ? table([
        {title: "At", cell: (x) => when(x.at), cls: "nowrap"},
        {title: "Score", cell: (x) => x.score, cls: "num"},
        {title: "Why", cell: (x) => x.reason},
      ], data.score_history) : h("p", {class: "empty"}, "No score changes recorded."),
      h("h3", null, "Defaults"),
      data.defaults.length ? table([
        {title: "At", cell: (x) => when(x.at), cls: "nowrap"},
        {title: "Order", cell: (x) => x.order_pk ? link(`orders/${x.order_pk}`, `#${x.order_pk}`)
          : "—"},
        {title: "Amount", cell: (x) => fen(x.amount), cls: "num"},
        {title: "Settled", cell: (x) => (x.settled ? "yes" : "no")},
      ], data.defaults) : h("p", {class: "empty"}, "No defaults."));
  });
  return {node, refresh: view.refresh};
}
