// The supervisor's search over the tickets (the query parameters of GET /v1/tickets: category, division,
// status) and its export: the file is fetched with the bearer header and handed to the browser as a blob,
// so the token never goes into a URL (a link with it would land in history and in server logs).

import { ApiError, api, authHeaders, query, session } from "./api.js";
import { STATUS, el, fill, when } from "./dom.js";
import { catalogue, categoryName } from "./inbox.js";

const PAGE = 50;

export class TicketSearch {
  render() {
    const select = (id, first, options) => el("select", { id }, el("option", { value: "" }, first),
      options.map(([value, name]) => el("option", { value }, name)));
    this.category = select("search-category", "全部类别", []);
    this.division = select("search-division", "全部区划", []);
    this.status = select("search-status", "全部状态", Object.entries(STATUS));
    this.format = select("search-format", "CSV", [["jsonl", "JSON Lines"]]);
    this.error = el("p", { class: "error", role: "alert" });
    this.summary = el("p", { class: "hint", id: "search-summary" });
    this.body = el("tbody");
    const form = el("form", { id: "ticket-search", class: "search" },
      el("label", {}, "类别", this.category), el("label", {}, "区划", this.division),
      el("label", {}, "状态", this.status), el("button", { type: "submit" }, "查询"),
      el("label", {}, "导出格式", this.format),
      el("button", { type: "button", id: "export", class: "secondary", onclick: () => this.export() }, "导出"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.search();
    });
    catalogue().then((c) => {
      for (const item of c.categories) this.category.append(el("option", { value: item.key }, item.name));
      for (const item of c.divisions) this.division.append(el("option", { value: item.code }, item.name));
    });
    return el("section", { id: "search", class: "card" }, el("h2", {}, "查询与导出"), form, this.error,
      this.summary, el("table", {}, el("thead", {}, el("tr", {},
        ["编号", "方向", "状态", "类别", "区划", "内容", "创建"].map((h) => el("th", {}, h)))), this.body));
  }

  params() {
    return { category: this.category.value, division: this.division.value, status: this.status.value };
  }

  async search() {
    fill(this.error);
    try {
      const page = await api("GET", `/v1/tickets${query({ ...this.params(), order: "newest", page_size: PAGE })}`);
      const items = page.items || [];
      fill(this.summary, `共 ${page.total ?? items.length} 件${items.length < (page.total ?? 0) ? `，显示前 ${items.length} 件` : ""}`);
      fill(this.body, items.length ? items.map((t) => el("tr", { dataset: { ticketId: t.id } },
        el("td", {}, t.id), el("td", {}, t.direction), el("td", {}, STATUS[t.status] || t.status),
        el("td", {}, categoryName(t.category)), el("td", {}, t.division || "—"),
        el("td", { class: "text" }, t.content || "—"), el("td", {}, when(t.created_at))))
        : el("tr", {}, el("td", { colspan: 7 }, "没有符合条件的联动单")));
    } catch (error) {
      fill(this.error, `查询失败：${error.message}`);
    }
  }

  async export() {
    fill(this.error);
    const format = this.format.value || "csv";
    try {
      const response = await fetch(`/v1/tickets/export${query({ ...this.params(), format })}`, {
        headers: authHeaders((session() || {}).token), cache: "no-store", credentials: "omit" });
      if (!response.ok) {
        let body = null;
        try { body = await response.json(); } catch { body = null; }
        throw new ApiError(response.status, body);
      }
      const blob = await response.blob();
      const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
      const url = URL.createObjectURL(blob);
      const link = el("a", { href: url, download: name ? name[1] : `tickets.${format}`, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } catch (error) {
      fill(this.error, `导出失败：${error.message}`);
    }
  }
}
