// Requests: the recent request log; failed signature checks explained in words.

import {api, badge, clip, field, h, link, live, pages, query, table, when} from "./dom.js";

export function verdictCell(row) {
  if (!row.verdict) return h("span", {class: "muted"}, "—");
  const ok = row.verdict.startsWith("signature ok");
  return h("div", {class: `verdict ${ok ? "ok" : "bad"}`},
    h("span", {class: "verdict-text"}, row.verdict),
    row.explanation ? h("p", {class: "explanation"}, row.explanation) : null);
}

export function requestsPage(params) {
  const filters = {
    mchid: params.get("mchid") || "", out_order_no: params.get("out_order_no") || "",
    failed: params.get("failed") === "true",
  };
  const paging = pages();
  const form = h("form", {class: "filters", id: "request-filters", autocomplete: "off"},
    field("Merchant", h("input", {name: "mchid", value: filters.mchid, size: 12})),
    field("out_order_no", h("input", {name: "out_order_no", value: filters.out_order_no})),
    h("label", {class: "check"}, h("input", {type: "checkbox", name: "failed", value: "true",
      checked: filters.failed}), " failed only (4xx/5xx)"),
    h("button", {type: "submit"}, "Filter"));
  const apply = (event) => {
    if (event) event.preventDefault();
    location.hash = `#/requests${query(Object.fromEntries(new FormData(form).entries()))}`;
  };
  form.addEventListener("submit", apply);
  form.addEventListener("change", (event) => { if (event.target.type === "checkbox") apply(); });
  const body = h("div", {id: "requests-table"});
  const pager = h("div", {class: "pager"});
  const node = h("section", {class: "page"}, h("h2", null, "Requests"), form, body, pager);
  const view = live(() => api(`/sandbox/api/requests${query({...filters, before: paging.before})}`), (data) => {
    body.replaceChildren(data.requests.length ? table([
      {title: "Time", cell: (r) => when(r.at), cls: "nowrap"},
      {title: "Merchant", cell: (r) => r.mchid || "—"},
      {title: "Request", cell: (r) => [h("strong", null, r.method), " ", clip(r.path, 90)],
        cls: "merchant-text"},
      {title: "Order", cell: (r) => r.out_order_no
        ? link(`requests${query({out_order_no: r.out_order_no})}`, r.out_order_no) : "—"},
      {title: "Status", cell: (r) => [badge(String(r.status ?? "—"),
        r.status >= 400 ? "failed" : "ok"), r.code ? ` ${r.code}` : ""]},
      {title: "Verdict", cell: verdictCell},
      {title: "Fault", cell: (r) => r.fault || "—"},
      {title: "ms", cell: (r) => r.duration_ms === null ? "—" : r.duration_ms.toFixed(1),
        cls: "num"},
    ], data.requests, (r) => (r.status >= 400 ? "request-row bad" : "request-row"))
      : h("p", {class: "empty"}, "No requests logged here yet."));
    pager.replaceChildren(...paging.buttons(data.next_before, () => view.refresh(true)));
  });
  return {node, refresh: view.refresh};
}
