// <fleet-dashboard>: every printer as a card, counters, filters, search, sort, grid or
// compact list, kept live over the WebSocket. The list is loaded over REST at start and
// again whenever the WebSocket (re)opens, so nothing missed while it was down stays stale.
// The queue's side comes the same way: the plates waiting to be cleared and the jobs on
// printers (GET /api/v1/plates, /api/v1/jobs), then the `jobs` topic's changes.
// Operators and admins also pick printers for bulk pause/resume/stop (bulk-actions.js).

import { api, goToLogin, handleSessionProblem } from "./api.js";
import { BulkActions } from "./bulk-actions.js";
import { h, replaceChildren, setText } from "./dom.js";
import { LiveFeed } from "./live.js";
import { PrinterCard } from "./printer-card.js";
import { CATEGORIES, CATEGORY_LABELS, hasError } from "./printer-model.js";
import { applyFrame, fetchAllPrinters, fetchPrinter, LIVE_PATH, PrinterStore } from "./printer-source.js";

const VIEW_KEY = "bf-fleet-view";
// The API's largest page: one request for a 1,000-printer farm.
const PAGE = 1000;
// Where a printer holds a queue job (jobs.model.ON_PRINTER).
const ON_PRINTER = ["uploading", "starting", "printing", "paused", "awaiting_clear"];
const COUNTED = [
  ["printing", "Printing"],
  ["idle", "Idle"],
  ["error", "Errors"],
  ["offline", "Offline"],
];
// Errors first, then what needs watching, then the quiet ones.
const CATEGORY_ORDER = { error: 0, paused: 1, printing: 2, idle: 3, offline: 4 };
const SORTS = {
  name: { label: "Name", compare: (a, b) => byName(a, b) },
  state: {
    label: "State (errors first)",
    compare: (a, b) => CATEGORY_ORDER[a.category] - CATEGORY_ORDER[b.category] || byName(a, b),
  },
  remaining: {
    label: "Finishing soonest",
    compare: (a, b) => remainingOf(a) - remainingOf(b) || byName(a, b),
  },
  progress: {
    label: "Progress",
    compare: (a, b) => (b.job.progress ?? -1) - (a.job.progress ?? -1) || byName(a, b),
  },
  model: { label: "Model", compare: (a, b) => a.model.localeCompare(b.model) || byName(a, b) },
};

function byName(a, b) {
  return a.name.localeCompare(b.name, undefined, { numeric: true, sensitivity: "base" });
}

function remainingOf(view) {
  const active = view.category === "printing" || view.category === "paused";
  return active && view.job.remainingMinutes !== null ? view.job.remainingMinutes : Number.MAX_SAFE_INTEGER;
}

export class FleetDashboard extends HTMLElement {
  connectedCallback() {
    if (this.cards) return;
    const role = document.body.dataset.role;
    this.canControl = role === "operator" || role === "admin";
    this.cards = new Map();
    this.store = new PrinterStore();
    this.fetching = new Set();
    this.plates = new Map(); // serial -> plate state, only those not cleared
    this.queueJobs = new Map(); // serial -> the queue job the printer holds
    this.contents = new Map(); // sha256 -> Promise of the library content (plates)
    this.filter = { state: "", model: "", errors: false, search: "" };
    this.sort = "state";
    this.resortQueued = false;
    this.build();
    this.feed = new LiveFeed(LIVE_PATH, () => [{ type: "subscribe", topics: ["printers", "jobs"] }]);
    this.feed.addEventListener("state", (event) => this.showLiveState(event.detail));
    this.feed.addEventListener("message", (event) => this.onMessage(event.detail));
    this.feed.addEventListener("auth", () => goToLogin());
    this.opened = false;
    this.feed.addEventListener("state", (event) => {
      // The first open follows the initial load; every later one may have missed updates.
      if (event.detail === "open" && this.opened) this.load();
      if (event.detail === "open") this.opened = true;
    });
    // The socket opens once the page holds the printers, so its snapshots land on known ones.
    this.load().finally(() => this.isConnected && this.feed.start());
  }

  disconnectedCallback() {
    this.feed?.stop();
  }

  build() {
    this.liveState = h("span", { class: "live-state", role: "status", "data-state": "closed" }, "Connecting…");
    this.counterButtons = {};
    const counters = h(
      "ul",
      { class: "counters", "aria-label": "Printers by state" },
      COUNTED.map(([kind, label]) => {
        const value = h("strong", {}, "0");
        const button = h(
          "button",
          { type: "button", class: "counter", "data-kind": kind, "aria-pressed": "false", title: `Show only: ${label.toLowerCase()}` },
          value,
          h("span", {}, label),
        );
        button.addEventListener("click", () => {
          this.filter.state = this.filter.state === kind ? "" : kind;
          this.stateSelect.value = this.filter.state;
          this.applyFilters();
        });
        this.counterButtons[kind] = { button, value };
        return h("li", {}, button);
      }),
    );

    this.searchInput = h("input", {
      id: "fleet-search",
      type: "search",
      placeholder: "Name, serial, model or job",
      autocomplete: "off",
    });
    this.searchInput.addEventListener("input", () => {
      this.filter.search = this.searchInput.value.trim().toLowerCase();
      this.applyFilters();
    });
    this.stateSelect = h(
      "select",
      { id: "fleet-state" },
      h("option", { value: "" }, "All states"),
      CATEGORIES.map((c) => h("option", { value: c }, CATEGORY_LABELS[c])),
    );
    this.stateSelect.addEventListener("change", () => {
      this.filter.state = this.stateSelect.value;
      this.applyFilters();
    });
    this.modelSelect = h("select", { id: "fleet-model" }, h("option", { value: "" }, "All models"));
    this.modelSelect.addEventListener("change", () => {
      this.filter.model = this.modelSelect.value;
      this.applyFilters();
    });
    this.errorsBox = h("input", { id: "fleet-errors", type: "checkbox" });
    this.errorsBox.addEventListener("change", () => {
      this.filter.errors = this.errorsBox.checked;
      this.applyFilters();
    });
    this.sortSelect = h(
      "select",
      { id: "fleet-sort" },
      Object.entries(SORTS).map(([key, sort]) => h("option", { value: key, selected: key === this.sort }, sort.label)),
    );
    this.sortSelect.addEventListener("change", () => {
      this.sort = this.sortSelect.value;
      this.resort();
    });
    this.viewButtons = {
      grid: h("button", { type: "button", "aria-pressed": "true", "data-view": "grid" }, "Cards"),
      list: h("button", { type: "button", "aria-pressed": "false", "data-view": "list" }, "List"),
    };
    for (const [mode, button] of Object.entries(this.viewButtons)) {
      button.addEventListener("click", () => this.setView(mode));
    }
    const toolbar = h(
      "div",
      { class: "toolbar", role: "search", "aria-label": "Filter printers" },
      h("div", { class: "field field-search" }, h("label", { for: "fleet-search" }, "Search"), this.searchInput),
      h("div", { class: "field" }, h("label", { for: "fleet-state" }, "State"), this.stateSelect),
      h("div", { class: "field" }, h("label", { for: "fleet-model" }, "Model"), this.modelSelect),
      h("div", { class: "field" }, h("label", { for: "fleet-sort" }, "Sort by"), this.sortSelect),
      h("label", { class: "check", for: "fleet-errors" }, this.errorsBox, "With errors only"),
      h(
        "div",
        { class: "field" },
        h("span", { class: "field-label", id: "fleet-view-label" }, "View"),
        h("div", { class: "view-switch", role: "group", "aria-labelledby": "fleet-view-label" }, this.viewButtons.grid, this.viewButtons.list),
      ),
    );
    this.summary = h("p", { class: "fleet-summary", "aria-live": "polite" });
    this.grid = h("div", { class: "fleet-grid", role: "list", "aria-label": "Printers" });
    this.grid.addEventListener("plate-changed", (event) => {
      this.setPlate(event.detail);
      this.showQueue(event.detail.printer);
    });
    this.bulk = null;
    if (this.canControl) {
      this.bulk = new BulkActions();
      this.bulk.setup({ cards: this.cards });
      this.grid.addEventListener("select-change", (event) => this.bulk.toggle(event.detail.serial, event.detail.selected));
    }
    this.message = h("div", { class: "notice notice-error", role: "alert", hidden: true });
    this.empty = h("p", { class: "empty", hidden: true });
    replaceChildren(
      this,
      h("div", { class: "dash-head" }, h("h1", {}, "Fleet"), counters, this.liveState),
      toolbar,
      this.message,
      this.summary,
      this.bulk,
      this.grid,
      this.empty,
    );
    let saved = null;
    try {
      saved = window.localStorage.getItem(VIEW_KEY);
    } catch {
      saved = null;
    }
    this.setView(saved === "list" ? "list" : "grid");
  }

  setView(mode) {
    this.grid.classList.toggle("is-list", mode === "list");
    for (const [key, button] of Object.entries(this.viewButtons)) {
      button.setAttribute("aria-pressed", String(key === mode));
    }
    try {
      window.localStorage.setItem(VIEW_KEY, mode);
    } catch {
      // Not remembered across visits when storage is off; the choice still applies now.
    }
  }

  showLiveState(state) {
    this.liveState.dataset.state = state;
    setText(this.liveState, { open: "Live", connecting: "Connecting…", closed: "Reconnecting…" }[state] || state);
  }

  async load() {
    let printers;
    try {
      printers = await fetchAllPrinters();
    } catch (err) {
      if (handleSessionProblem(err)) return;
      this.message.textContent = `The printers could not be loaded: ${err.message}`;
      this.message.hidden = false;
      return;
    }
    this.message.hidden = true;
    await this.loadQueue();
    const seen = new Set();
    for (const printer of printers) {
      seen.add(printer.serial);
      this.upsert(this.store.setInfo(printer));
    }
    for (const serial of this.store.serials()) {
      if (!seen.has(serial)) this.removePrinter(serial);
    }
    this.refreshModels();
    this.resort();
    this.applyFilters();
  }

  async loadQueue() {
    let plates;
    let jobs;
    try {
      const states = ON_PRINTER.map((s) => `state=${s}`).join("&");
      [plates, jobs] = await Promise.all([
        api(`/api/v1/plates?cleared=false&limit=${PAGE}`),
        api(`/api/v1/jobs?${states}&limit=${PAGE}`),
      ]);
    } catch (err) {
      if (handleSessionProblem(err)) return;
      this.message.textContent = `The queue's state could not be loaded: ${err.message}`;
      this.message.hidden = false;
      return;
    }
    const touched = new Set([...this.plates.keys(), ...this.queueJobs.keys()]);
    this.plates.clear();
    this.queueJobs.clear();
    for (const plate of plates.items) this.setPlate(plate);
    for (const job of jobs.items) this.setJob(job);
    for (const serial of [...touched, ...this.plates.keys(), ...this.queueJobs.keys()]) this.showQueue(serial);
  }

  setPlate(plate) {
    if (plate.cleared) this.plates.delete(plate.printer);
    else this.plates.set(plate.printer, plate);
  }

  setJob(job) {
    const held = job.printer ? this.queueJobs.get(job.printer) : null;
    if (job.printer && ON_PRINTER.includes(job.state)) {
      if (!held || held.id === job.id || held.updated_at <= job.updated_at) this.queueJobs.set(job.printer, job);
    } else {
      // Done, cancelled or back in the queue: a printer that held it no longer does.
      for (const [serial, known] of this.queueJobs) {
        if (known.id === job.id) this.queueJobs.delete(serial);
      }
    }
  }

  showQueue(serial) {
    this.cards.get(serial)?.setQueue({ plate: this.plates.get(serial) || null, job: this.queueJobs.get(serial) || null });
  }

  /** The library content of `sha256`'s plate `index` (for its thumbnail), or null. */
  plateOf(sha256, index) {
    let content = this.contents.get(sha256);
    if (!content) {
      content = api(`/api/v1/library/contents/${encodeURIComponent(sha256)}`).catch(() => null);
      this.contents.set(sha256, content);
    }
    return content.then((c) => c?.plates.find((p) => p.index === index) || null);
  }

  applyJobs(frame) {
    const touched = new Set();
    for (const plate of frame.plates || []) {
      this.setPlate(plate);
      touched.add(plate.printer);
    }
    for (const job of frame.jobs || []) {
      for (const [serial, known] of this.queueJobs) if (known.id === job.id) touched.add(serial);
      this.setJob(job);
      if (job.printer) touched.add(job.printer);
    }
    for (const serial of touched) this.showQueue(serial);
  }

  upsert(view) {
    let card = this.cards.get(view.serial);
    if (!card) {
      card = new PrinterCard();
      card.setup(view, { canControl: this.canControl, selectable: this.canControl, plateOf: (sha, plate) => this.plateOf(sha, plate) });
      this.cards.set(view.serial, card);
      this.grid.append(card);
      this.showQueue(view.serial);
      return card;
    }
    card.update(view);
    return card;
  }

  removePrinter(serial) {
    this.store.remove(serial);
    this.cards.get(serial)?.remove();
    this.cards.delete(serial);
  }

  onMessage(frame) {
    if (frame.type === "jobs") {
      this.applyJobs(frame);
      return;
    }
    let membership = false;
    applyFrame(this.store, frame, {
      changed: (view) => this.changed(view),
      unknown: (serial, status) => this.fetchNew(serial, status),
      removed: (serial) => {
        this.removePrinter(serial);
        membership = true;
      },
    });
    if (membership) this.refreshModels();
    // Once per frame, not per printer: a frame can carry hundreds of printers.
    this.updateCounters();
    this.updateSummary();
  }

  changed(view) {
    const card = this.cards.get(view.serial);
    const before = card?.view;
    this.upsert(view);
    this.filterCard(this.cards.get(view.serial));
    if (!before || SORTS[this.sort].compare(before, view) !== 0) this.queueResort();
  }

  async fetchNew(serial, status) {
    // A printer added since the list was loaded: its settings come from REST.
    if (this.fetching.has(serial)) return;
    this.fetching.add(serial);
    try {
      this.store.setInfo(await fetchPrinter(serial));
      const view = status ? this.store.setStatus(status) : this.store.view(serial);
      this.changed(view);
      this.refreshModels();
      this.updateCounters();
      this.updateSummary();
    } catch (err) {
      handleSessionProblem(err);
    } finally {
      this.fetching.delete(serial);
    }
  }

  queueResort() {
    if (this.resortQueued) return;
    this.resortQueued = true;
    requestAnimationFrame(() => {
      this.resortQueued = false;
      this.resort();
    });
  }

  resort() {
    const compare = SORTS[this.sort].compare;
    const ordered = [...this.cards.values()].sort((a, b) => compare(a.view, b.view));
    // Move only the cards out of place: moving a focused card would drop the focus.
    ordered.forEach((card, index) => {
      const here = this.grid.children[index];
      if (here !== card) this.grid.insertBefore(card, here || null);
    });
  }

  refreshModels() {
    const models = [...new Set([...this.cards.values()].map((card) => card.view.model).filter(Boolean))].sort();
    const current = this.modelSelect.value;
    replaceChildren(
      this.modelSelect,
      h("option", { value: "" }, "All models"),
      models.map((model) => h("option", { value: model, selected: model === current }, model)),
    );
    if (!models.includes(current)) this.filter.model = "";
  }

  matches(view) {
    const f = this.filter;
    if (f.state === "printing") {
      // Paused prints count as printing (see updateCounters), so they show with them too.
      if (view.category !== "printing" && view.category !== "paused") return false;
    } else if (f.state && view.category !== f.state) {
      return false;
    }
    if (f.model && view.model !== f.model) return false;
    if (f.errors && !hasError(view) && view.hms.length === 0) return false;
    if (f.search) {
      const text = `${view.name} ${view.serial} ${view.model} ${view.job.name}`.toLowerCase();
      if (!text.includes(f.search)) return false;
    }
    return true;
  }

  filterCard(card) {
    const hidden = !this.matches(card.view);
    if (card.hidden !== hidden) card.hidden = hidden;
  }

  applyFilters() {
    for (const card of this.cards.values()) this.filterCard(card);
    for (const [kind, { button }] of Object.entries(this.counterButtons)) {
      button.setAttribute("aria-pressed", String(this.filter.state === kind));
    }
    this.updateCounters();
    this.updateSummary();
  }

  updateCounters() {
    const counts = { printing: 0, idle: 0, error: 0, offline: 0, paused: 0 };
    for (const card of this.cards.values()) counts[card.view.category] += 1;
    // Paused prints are still jobs on the plate: they count with printing.
    counts.printing += counts.paused;
    for (const [kind, { value }] of Object.entries(this.counterButtons)) setText(value, counts[kind]);
  }

  updateSummary() {
    const total = this.cards.size;
    let shown = 0;
    for (const card of this.cards.values()) if (!card.hidden) shown += 1;
    setText(this.summary, total === 0 ? "" : shown === total ? `${total} printers` : `Showing ${shown} of ${total} printers`);
    this.empty.hidden = shown > 0;
    // Filters, states and membership all change what the bulk bar offers.
    this.bulk?.refresh();
    setText(
      this.empty,
      total === 0 ? "No printers yet. An admin adds them through the API (POST /api/v1/printers, described at /api/docs)." : "No printer matches these filters.",
    );
  }
}
