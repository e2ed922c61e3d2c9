// Notifications: the callback outbox (pending, delivered, failing) and re-delivery.

import {act, api, badge, clip, h, link, live, pages, query, table, when} from "./dom.js";

const TABS = [["", "All"], ["PENDING", "Pending"], ["failing", "Failing"],
  ["DELIVERED", "Delivered"], ["FAILED", "Gave up"]];

export function redeliverButton(note, done) {
  const button = h("button", {type: "button", class: "redeliver",
    title: "POST /sandbox/notifications/<id>/redeliver"}, "Re-deliver");
  button.addEventListener("click", () => act(button, async () => {
    await api(`/sandbox/notifications/${encodeURIComponent(note.id)}/redeliver`,
      {method: "POST", body: {}});
    return `re-delivery of ${note.event_type} queued`;
  }, done));
  return button;
}

export function attemptsTable(attempts) {
  if (!attempts.length) return h("p", {class: "muted attempts-none"}, "no delivery attempt yet");
  return table([
    {title: "#", cell: (a) => a.n, cls: "num"},
    {title: "At", cell: (a) => when(a.at), cls: "nowrap"},
    {title: "Answer status", cell: (a) => a.status_code === null
      ? badge("no answer", "failed") : badge(String(a.status_code),
        a.status_code >= 200 && a.status_code < 300 ? "ok" : "failed")},
    {title: "Latency", cell: (a) => a.latency_ms === null ? "—" : `${a.latency_ms.toFixed(0)} ms`,
      cls: "num"},
    {title: "Answer", cell: (a) => clip(a.answer, 300), cls: "merchant-text answer"},
    {title: "Error / fault", cell: (a) => [a.error || "", a.fault ? ` fault: ${a.fault}` : ""]},
  ], attempts.map((a, i) => ({...a, n: i + 1})), () => "attempt-row");
}

export function notificationsPage(params) {
  const tab = params.get("status") || "";
  const paging = pages();
  const tabs = h("div", {class: "tabs"}, TABS.map(([value, text]) =>
    h("a", {href: `#/notifications${query({status: value})}`,
      class: value === tab ? "tab active" : "tab"}, text)));
  const body = h("div", {id: "notifications-table"});
  const pager = h("div", {class: "pager"});
  const node = h("section", {class: "page"}, h("h2", null, "Notifications"), tabs, body, pager);
  const filter = tab === "failing" ? {failing: "true"} : {status: tab};
  const view = live(() => api(`/sandbox/api/notifications${query({...filter, before: paging.before})}`),
    (data) => {
      body.replaceChildren(data.notifications.length ? table([
        {title: "Created", cell: (n) => when(n.created), cls: "nowrap"},
        {title: "Event", cell: (n) => n.event_type},
        {title: "Order", cell: (n) => n.order_pk
          ? link(`orders/${n.order_pk}`, n.out_order_no || `#${n.order_pk}`) : "—"},
        {title: "URL", cell: (n) => clip(n.url, 60), cls: "merchant-text"},
        {title: "Status", cell: (n) => badge(n.status)},
        {title: "Attempts", cell: (n) => n.attempts, cls: "num"},
        {title: "Last answer", cell: (n) => n.last_attempt ? [
          badge(String(n.last_attempt.status_code ?? "none"),
            n.last_attempt.status_code >= 200 && n.last_attempt.status_code < 300
              ? "ok" : "failed"),
          " ", clip(n.last_attempt.answer || n.last_attempt.error, 80)] : "—",
          cls: "merchant-text"},
        {title: "Next retry", cell: (n) => when(n.next_attempt), cls: "nowrap"},
        {title: "", cell: (n) => redeliverButton(n, () => view.refresh(true))},
      ], data.notifications, () => "notification-row")
        : h("p", {class: "empty"}, "No notifications here."));
      pager.replaceChildren(...paging.buttons(data.next_before, () => view.refresh(true)));
    });
  return {node, refresh: view.refresh};
}
