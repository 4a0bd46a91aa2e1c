// <history-page>: every print with its printer, file, plate, start, end, duration, outcome and
// filament (GET /api/v1/history/prints, newest first, "Load older" follows the cursor), with
// filters for printer, outcome and time range; and the statistics of that time range
// (GET /api/v1/statistics): success rate, print hours and grams for the fleet and per
// printer, as figures, inline-SVG charts (history-charts.js) and a table.

import { api, handleSessionProblem } from "./api.js";
import { h, replaceChildren, setText } from "./dom.js";
import { duration } from "./format.js";
import { barChart } from "./history-charts.js";
import { grams, swatch } from "./plate-summary.js";
import { fetchAllPrinters } from "./printer-source.js";

// Prints per request; the API allows up to 1,000 but a page of 50 rows reads well.
const PAGE = 50;
const HOUR_MS = 3_600_000;
const RANGES = [
  ["1d", "Last 24 hours", 24],
  ["7d", "Last 7 days", 24 * 7],
  ["30d", "Last 30 days", 24 * 30],
  ["365d", "Last 12 months", 24 * 365],
  ["all", "All time", null],
];
const OUTCOMES = [
  ["done", "Done"],
  ["failed", "Failed"],
  ["cancelled", "Cancelled"],
  ["running", "Running"],
];
const OUTCOME_LABEL = Object.fromEntries(OUTCOMES);

function when(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

function hours(value) {
  if (!Number.isFinite(value)) return "";
  return value < 10 ? `${value.toFixed(1)} h` : `${Math.round(value)} h`;
}

function rate(value) {
  return value === null || value === undefined ? "—" : `${Math.round(value * 100)}%`;
}

function totalGrams(byMaterial) {
  return Object.values(byMaterial || {}).reduce((sum, g) => sum + g, 0);
}

export class HistoryPage extends HTMLElement {
  connectedCallback() {
    if (this.table) return;
    this.names = new Map();
    this.filter = { printer: "", outcome: "", range: "30d" };
    this.cursor = null;
    this.build();
    this.loadPrinters().finally(() => this.isConnected && this.reload());
  }

  disconnectedCallback() {
    this.abort?.abort();
  }

  build() {
    this.message = h("div", { class: "notice notice-error", role: "alert", hidden: true });
    this.printerSelect = h("select", { id: "history-printer" }, h("option", { value: "" }, "All printers"));
    this.outcomeSelect = h(
      "select",
      { id: "history-outcome" },
      h("option", { value: "" }, "All outcomes"),
      OUTCOMES.map(([value, label]) => h("option", { value }, label)),
    );
    this.rangeSelect = h(
      "select",
      { id: "history-range" },
      RANGES.map(([value, label]) => h("option", { value, selected: value === this.filter.range }, label)),
    );
    const onChange = (key, select) =>
      select.addEventListener("change", () => {
        this.filter[key] = select.value;
        this.reload({ stats: key === "range" });
      });
    onChange("printer", this.printerSelect);
    onChange("outcome", this.outcomeSelect);
    onChange("range", this.rangeSelect);
    const refresh = h("button", { type: "button", class: "button" }, "Refresh");
    refresh.addEventListener("click", () => this.reload());
    const toolbar = h(
      "div",
      { class: "toolbar history-toolbar" },
      h("div", { class: "field" }, h("label", { for: "history-range" }, "Time range"), this.rangeSelect),
      h("div", { class: "field" }, h("label", { for: "history-printer" }, "Printer"), this.printerSelect),
      h("div", { class: "field" }, h("label", { for: "history-outcome" }, "Outcome"), this.outcomeSelect),
      refresh,
    );

    this.statsHeading = h("h2", { id: "history-stats-title" }, "Statistics");
    this.figures = h("dl", { class: "stat-figures", "aria-live": "polite" });
    this.charts = h("div", { class: "charts" });
    this.statsTable = h("div", { class: "table-scroll" });
    const stats = h("section", { class: "panel history-stats", "aria-labelledby": "history-stats-title" }, this.statsHeading, this.figures, this.charts, this.statsTable);

    this.summary = h("p", { class: "history-summary", "aria-live": "polite" }, "Loading…");
    this.rows = h("tbody");
    this.table = h(
      "table",
      { class: "history-table" },
      h("caption", { class: "visually-hidden" }, "Prints, newest first"),
      h(
        "thead",
        {},
        h("tr", {}, ["Printer", "File", "Plate", "Started", "Ended", "Duration", "Outcome", "Filament"].map((t) => h("th", { scope: "col" }, t))),
      ),
      this.rows,
    );
    this.older = h("button", { type: "button", class: "button history-older", hidden: true }, "Load older prints");
    this.older.addEventListener("click", () => this.loadPrints({ append: true }));
    const prints = h(
      "section",
      { class: "panel history-prints", "aria-labelledby": "history-prints-title" },
      h("h2", { id: "history-prints-title" }, "Prints"),
      this.summary,
      h("div", { class: "table-scroll" }, this.table),
      this.older,
    );
    replaceChildren(this, h("div", { class: "page-head" }, h("h1", {}, "History")), this.message, toolbar, stats, prints);
  }

  showError(text) {
    this.message.textContent = text;
    this.message.hidden = !text;
  }

  problem(what, err) {
    if (err.name === "AbortError" || handleSessionProblem(err)) return;
    this.showError(`${what} could not be loaded: ${err.detail || err.message}`);
  }

  nameOf(serial) {
    return this.names.get(serial) || serial;
  }

  async loadPrinters() {
    try {
      const printers = await fetchAllPrinters();
      printers.sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
      for (const p of printers) this.names.set(p.serial, p.name);
      replaceChildren(
        this.printerSelect,
        h("option", { value: "" }, "All printers"),
        printers.map((p) => h("option", { value: p.serial }, `${p.name} (${p.model_name})`)),
      );
    } catch (err) {
      // The history still reads by serial without the names.
      this.problem("The printers", err);
    }
  }

  since() {
    const range = RANGES.find(([value]) => value === this.filter.range);
    if (!range || range[2] === null) return null;
    return new Date(Date.now() - range[2] * HOUR_MS).toISOString();
  }

  reload({ stats = true } = {}) {
    this.showError("");
    this.loadPrints();
    if (stats) this.loadStatistics();
  }

  async loadPrints({ append = false } = {}) {
    this.abort?.abort();
    const abort = new AbortController();
    this.abort = abort;
    const query = new URLSearchParams({ limit: String(PAGE) });
    if (this.filter.printer) query.set("printer", this.filter.printer);
    if (this.filter.outcome) query.set("outcome", this.filter.outcome);
    const since = this.since();
    if (since) query.set("since", since);
    if (append && this.cursor) query.set("cursor", this.cursor);
    let page;
    try {
      page = await api(`/api/v1/history/prints?${query}`, { signal: abort.signal });
    } catch (err) {
      this.problem("The prints", err);
      return;
    }
    this.cursor = page.next_cursor;
    const rows = page.items.map((p) => this.row(p));
    if (append) this.rows.append(...rows);
    else replaceChildren(this.rows, rows);
    const count = this.rows.children.length;
    if (count === 0) setText(this.summary, "No print matches these filters.");
    else setText(this.summary, `${count === 1 ? "1 print" : `${count} prints`}${this.cursor ? " shown; older ones follow" : ""}`);
    this.table.hidden = count === 0;
    this.older.hidden = !this.cursor;
  }

  row(print) {
    let length = print.duration_s === null ? "" : duration(print.duration_s / 60);
    if (print.outcome === "running") length = `${duration((Date.now() - Date.parse(print.started_at)) / 60_000)} so far`;
    const outcome = h("span", { class: `outcome outcome-${print.outcome}` }, OUTCOME_LABEL[print.outcome] || print.outcome);
    const outcomeCell = h("td", { "data-col": "outcome" }, outcome);
    if (print.outcome !== "done" && print.outcome !== "running" && print.progress > 0) {
      outcomeCell.append(h("span", { class: "outcome-progress" }, ` at ${print.progress}%`));
    }
    if (print.reason) outcomeCell.append(h("span", { class: "outcome-reason" }, print.reason));
    return h(
      "tr",
      { "data-print-id": String(print.id), "data-outcome": print.outcome },
      h("td", { "data-col": "printer" }, this.nameOf(print.printer)),
      h("td", { "data-col": "file", class: "cell-file" }, print.file_name),
      h("td", { "data-col": "plate" }, String(print.plate)),
      h("td", { "data-col": "started" }, h("time", { datetime: print.started_at }, when(print.started_at))),
      h("td", { "data-col": "ended" }, print.ended_at ? h("time", { datetime: print.ended_at }, when(print.ended_at)) : "—"),
      h("td", { "data-col": "duration" }, length),
      outcomeCell,
      h("td", { "data-col": "filament" }, this.filament(print.filament)),
    );
  }

  filament(uses) {
    if (uses.length === 0) return "—";
    return h(
      "ul",
      { class: "filaments filaments-compact" },
      uses.map((u) => {
        const material = u.material || "Filament";
        const used = u.used_g ?? u.planned_g;
        const text = u.used_g === null && u.planned_g !== null ? `${grams(u.planned_g)} planned` : grams(used);
        return h("li", { class: "filament" }, swatch(u.color, `${material} ${u.color || ""}`.trim()), h("span", {}, material), text ? h("span", { class: "filament-grams" }, text) : null);
      }),
    );
  }

  async loadStatistics() {
    const query = new URLSearchParams();
    const since = this.since();
    if (since) query.set("since", since);
    let stats;
    try {
      stats = await api(`/api/v1/statistics${query.toString() ? `?${query}` : ""}`);
    } catch (err) {
      this.problem("The statistics", err);
      return;
    }
    const range = RANGES.find(([value]) => value === this.filter.range);
    setText(this.statsHeading, `Statistics · ${range ? range[1].toLowerCase() : ""}`);
    this.showStatistics(stats);
  }

  showStatistics(stats) {
    const fleet = stats.fleet;
    const figure = (key, label, value, hint) =>
      h("div", { class: "stat", "data-stat": key }, h("dt", {}, label), h("dd", {}, value), hint ? h("span", { class: "stat-hint" }, hint) : null);
    replaceChildren(
      this.figures,
      figure("prints", "Prints", String(fleet.prints), fleet.running ? `${fleet.running} running` : ""),
      figure("success", "Success rate", rate(fleet.success_rate), `${fleet.done} done · ${fleet.failed} failed · ${fleet.cancelled} cancelled`),
      figure("hours", "Print hours", hours(fleet.print_hours)),
      figure("filament", "Filament", grams(totalGrams(fleet.filament_g)) || "0 g"),
    );
    const printers = [...stats.printers].sort((a, b) => this.nameOf(a.printer).localeCompare(this.nameOf(b.printer), undefined, { numeric: true }));
    const outcomes = barChart({
      title: "Outcomes per printer",
      rows: printers.map((p) => ({
        label: this.nameOf(p.printer),
        segments: [
          { value: p.done, kind: "done", name: "done" },
          { value: p.failed, kind: "failed", name: "failed" },
          { value: p.cancelled, kind: "cancelled", name: "cancelled" },
          { value: p.running, kind: "running", name: "running" },
        ],
      })),
      format: (n) => String(n),
      summary: printers.map((p) => `${this.nameOf(p.printer)}: ${p.done} done, ${p.failed} failed, ${p.cancelled} cancelled`).join("; "),
      legend: [
        ["done", "Done"],
        ["failed", "Failed"],
        ["cancelled", "Cancelled"],
        ["running", "Running"],
      ],
    });
    const printHours = barChart({
      title: "Print hours per printer",
      rows: printers.map((p) => ({ label: this.nameOf(p.printer), segments: [{ value: p.print_hours, kind: "hours", name: "hours" }] })),
      format: hours,
      summary: printers.map((p) => `${this.nameOf(p.printer)}: ${hours(p.print_hours)}`).join("; "),
    });
    const materials = Object.entries(fleet.filament_g).sort((a, b) => b[1] - a[1]);
    const filament = barChart({
      title: "Filament by material",
      rows: materials.map(([material, g]) => ({ label: material, segments: [{ value: g, kind: "filament", name: material }] })),
      format: (g) => grams(g),
      summary: materials.map(([material, g]) => `${material}: ${grams(g)}`).join("; "),
    });
    replaceChildren(this.charts, outcomes, printHours, filament);
    replaceChildren(
      this.statsTable,
      h(
        "table",
        { class: "stats-table" },
        h("caption", { class: "visually-hidden" }, "Statistics per printer"),
        h(
          "thead",
          {},
          h("tr", {}, ["Printer", "Prints", "Done", "Failed", "Cancelled", "Success rate", "Print hours", "Filament"].map((t) => h("th", { scope: "col" }, t))),
        ),
        h(
          "tbody",
          {},
          printers.map((p) =>
            h(
              "tr",
              { "data-printer": p.printer },
              h("th", { scope: "row" }, this.nameOf(p.printer)),
              [p.prints, p.done, p.failed, p.cancelled].map((n) => h("td", {}, String(n))),
              h("td", {}, rate(p.success_rate)),
              h("td", {}, hours(p.print_hours)),
              h("td", {}, grams(totalGrams(p.filament_g)) || "0 g"),
            ),
          ),
        ),
      ),
    );
    this.statsTable.hidden = printers.length === 0;
  }
}
