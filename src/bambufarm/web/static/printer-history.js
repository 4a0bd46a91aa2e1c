// <hms-history serial="..."> and <recent-prints serial="...">: what happened on one printer —
// HMS conditions raised and cleared (GET /api/v1/events?serial=&kind=hms_*), and its last
// prints with their outcome (GET /api/v1/history/prints?printer=). Both reload on `refresh()`,
// which the printer page calls when the WebSocket reports a matching event.

import { api, handleSessionProblem } from "./api.js";
import { h, replaceChildren, setText } from "./dom.js";
import { duration } from "./format.js";

const SHOWN = 15;

function when(iso) {
  return iso ? new Date(iso).toLocaleString([], { dateStyle: "short", timeStyle: "short" }) : "—";
}

class HistoryList extends HTMLElement {
  connectedCallback() {
    if (this.body) return;
    this.serial = this.getAttribute("serial") || "";
    this.body = h("div", {});
    this.status = h("p", { class: "card-model", role: "status", "aria-live": "polite" });
    replaceChildren(this, this.body, this.status);
    this.refresh();
  }

  /** Load the list again (coalesced: one request at a time, one more if asked meanwhile). */
  async refresh() {
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    try {
      const page = await api(this.path());
      this.draw(page.items);
      setText(this.status, page.items.length ? "" : this.emptyText());
    } catch (err) {
      if (!handleSessionProblem(err)) setText(this.status, `Could not be loaded: ${err.message}`);
    } finally {
      this.loading = false;
      if (this.again) {
        this.again = false;
        this.refresh();
      }
    }
  }
}

const SEVERITY = { fatal: "Fatal", serious: "Serious", common: "Common", info: "Info" };

export class HmsHistory extends HistoryList {
  path() {
    const serial = encodeURIComponent(this.serial);
    return `/api/v1/events?serial=${serial}&kind=hms_raised&kind=hms_cleared&limit=${SHOWN}`;
  }

  emptyText() {
    return "No HMS messages recorded.";
  }

  draw(items) {
    replaceChildren(
      this.body,
      items.length
        ? h(
            "ol",
            { class: "event-list", "aria-label": "HMS history, newest first" },
            items.map((event) =>
              h(
                "li",
                { "data-kind": event.kind },
                h("time", { datetime: event.at }, when(event.at)),
                h("span", {}, event.kind === "hms_raised" ? "Raised" : "Cleared"),
                h("code", {}, event.data.code || ""),
                h("span", { class: `badge badge-hms-${event.data.severity || "unknown"}` }, SEVERITY[event.data.severity] || "Unknown"),
              ),
            ),
          )
        : null,
    );
  }
}

const OUTCOMES = { done: "Done", failed: "Failed", cancelled: "Cancelled", running: "Printing" };

export class RecentPrints extends HistoryList {
  path() {
    return `/api/v1/history/prints?printer=${encodeURIComponent(this.serial)}&limit=${SHOWN}`;
  }

  emptyText() {
    return "No prints recorded on this printer yet.";
  }

  draw(items) {
    replaceChildren(
      this.body,
      items.length
        ? h(
            "table",
            { class: "prints-table" },
            h("thead", {}, h("tr", {}, ["File", "Started", "Took", "Outcome"].map((label) => h("th", { scope: "col" }, label)))),
            h(
              "tbody",
              {},
              items.map((print) =>
                h(
                  "tr",
                  { "data-outcome": print.outcome },
                  h("td", { class: "file-name" }, print.plate > 1 ? `${print.file_name} (plate ${print.plate})` : print.file_name),
                  h("td", {}, h("time", { datetime: print.started_at }, when(print.started_at))),
                  h("td", {}, print.duration_s !== null ? duration(print.duration_s / 60) || "—" : "—"),
                  h(
                    "td",
                    {},
                    h("span", { class: `outcome outcome-${print.outcome}` }, OUTCOMES[print.outcome] || print.outcome),
                    print.reason ? h("span", { class: "card-model" }, ` — ${print.reason}`) : null,
                  ),
                ),
              ),
            ),
          )
        : null,
    );
  }
}

if (!customElements.get("hms-history")) customElements.define("hms-history", HmsHistory);
if (!customElements.get("recent-prints")) customElements.define("recent-prints", RecentPrints);
