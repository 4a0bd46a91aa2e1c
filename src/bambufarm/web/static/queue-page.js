// <queue-page>: the print queue. Jobs on printers first, then the waiting ones in the order the
// dispatcher takes them, then (under their filter) the finished ones, newest first. Loaded over
// REST and kept live by the WebSocket's `jobs` topic; reloaded whenever the socket (re)opens.
// Operators reorder waiting jobs by drag and drop or from the keyboard (the ↑/↓ buttons or
// Alt+↑/↓ on a row, the result announced), cancel (confirmed), retry, duplicate, and add a
// job from the library with the shared job dialog. Viewers get the same list without controls.

import { api, goToLogin, handleSessionProblem } from "./api.js";
import { confirmAction } from "./confirm-dialog.js";
import { h, replaceChildren, setText } from "./dom.js";
import { JobRow, reorderable, STATE_GROUPS } from "./job-row.js";
import { openJobDialog } from "./job-dialog.js";
import { LiveFeed } from "./live.js";
import { fetchAllPrinters, LIVE_PATH } from "./printer-source.js";

// The API's largest page: a queue longer than this shows its first 1,000 (and says so).
const PAGE = 1000;
// Finished jobs are history; the queue shows the latest of them.
const FINISHED_SHOWN = 100;
const FILTERS = [
  ["", "All open"],
  ["active", "On printers"],
  ["waiting", "Waiting"],
  ["finished", "Finished"],
];
const UNFINISHED = [...STATE_GROUPS.active, ...STATE_GROUPS.waiting];

function stateQuery(states) {
  return states.map((s) => `state=${encodeURIComponent(s)}`).join("&");
}

// The dispatcher's order (storage.jobs): priority, due time (none last), position, id.
function queueOrder(a, b) {
  if (a.priority !== b.priority) return b.priority - a.priority;
  const da = a.due ? Date.parse(a.due) : Infinity;
  const db = b.due ? Date.parse(b.due) : Infinity;
  if (da !== db) return da < db ? -1 : 1;
  return a.position - b.position || a.id - b.id;
}

function pageOrder(a, b) {
  const rank = (job) => (STATE_GROUPS.active.has(job.state) ? 0 : STATE_GROUPS.waiting.has(job.state) ? 1 : 2);
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  if (ra === 1) return queueOrder(a, b);
  if (ra === 0) return (a.started_at || a.updated_at).localeCompare(b.started_at || b.updated_at) || a.id - b.id;
  return (b.finished_at || b.updated_at).localeCompare(a.finished_at || a.updated_at) || b.id - a.id;
}

export class QueuePage extends HTMLElement {
  connectedCallback() {
    if (this.rows) return;
    const role = document.body.dataset.role;
    this.canQueue = role === "operator" || role === "admin";
    this.rows = new Map();
    this.jobs = new Map();
    this.printers = new Map();
    this.contents = new Map();
    this.filter = "";
    this.build();
    this.feed = new LiveFeed(LIVE_PATH, () => [{ type: "subscribe", topics: ["jobs"] }]);
    this.feed.addEventListener("state", (event) => this.showLiveState(event.detail));
    this.feed.addEventListener("message", (event) => this.onMessage(event.detail));
    this.feed.addEventListener("auth", () => goToLogin());
    // Every open (the first included) is followed by a full load: the frames only carry
    // changes, and whatever changed while the socket was down must not stay stale.
    this.feed.addEventListener("state", (event) => {
      if (event.detail === "open") this.load();
    });
    this.loadPrinters();
    this.feed.start();
  }

  disconnectedCallback() {
    this.feed?.stop();
  }

  build() {
    this.liveState = h("span", { class: "live-state", role: "status", "data-state": "closed" }, "Connecting…");
    this.filterButtons = {};
    const filters = h(
      "div",
      { class: "view-switch queue-filters", role: "group", "aria-label": "Show jobs" },
      FILTERS.map(([key, label]) => {
        const button = h("button", { type: "button", "data-filter": key || "open", "aria-pressed": String(key === this.filter) }, label);
        button.addEventListener("click", () => this.setFilter(key));
        this.filterButtons[key] = button;
        return button;
      }),
    );
    this.addButton = this.canQueue ? h("button", { type: "button", class: "button button-primary", "data-action": "add" }, "Add job") : null;
    this.addButton?.addEventListener("click", () => this.addJob());
    this.message = h("div", { class: "notice notice-error", role: "alert", hidden: true });
    this.announcer = h("p", { class: "visually-hidden", "aria-live": "polite", "data-field": "announcer" });
    this.summary = h("p", { class: "queue-summary", "aria-live": "polite" });
    this.list = h("ol", { class: "job-list", "aria-label": "Jobs" });
    this.empty = h("p", { class: "empty", hidden: true });
    const hint = this.canQueue
      ? h("p", { class: "queue-hint" }, "Drag a waiting job to move it, or focus it and press Alt+↑ / Alt+↓.")
      : null;
    replaceChildren(
      this,
      h("div", { class: "dash-head queue-head" }, h("h1", {}, "Queue"), this.liveState, this.addButton),
      h("div", { class: "toolbar" }, filters),
      hint,
      this.message,
      this.announcer,
      this.summary,
      this.list,
      this.empty,
    );
    this.list.addEventListener("job-action", (event) => this.act(event.detail.action, event.detail.job, event.target));
    if (this.canQueue) this.setupDrag();
  }

  showLiveState(state) {
    this.liveState.dataset.state = state;
    setText(this.liveState, { open: "Live", connecting: "Connecting…", closed: "Reconnecting…" }[state] || state);
  }

  showProblem(err, what) {
    if (handleSessionProblem(err)) return;
    this.message.textContent = `${what}: ${err.message}`;
    this.message.hidden = false;
  }

  announce(text) {
    // Cleared first so the same words said twice are still read out.
    this.announcer.textContent = "";
    requestAnimationFrame(() => setText(this.announcer, text));
  }

  async loadPrinters() {
    try {
      for (const printer of await fetchAllPrinters()) this.printers.set(printer.serial, printer.name || printer.serial);
      for (const row of this.rows.values()) row.update(row.job);
    } catch (err) {
      this.showProblem(err, "The printers could not be loaded");
    }
  }

  printerName(serial) {
    return this.printers.get(serial) || serial;
  }

  /** The plate (as GET /api/v1/library/contents/{sha256} lists it), or null; one request per file. */
  plateOf(sha256, index) {
    let content = this.contents.get(sha256);
    if (!content) {
      content = api(`/api/v1/library/contents/${encodeURIComponent(sha256)}`).catch(() => null);
      this.contents.set(sha256, content);
    }
    return content.then((c) => c?.plates.find((p) => p.index === index) || null);
  }

  async load() {
    let open;
    let finished;
    try {
      [open, finished] = await Promise.all([
        api(`/api/v1/jobs?${stateQuery(UNFINISHED)}&limit=${PAGE}`),
        api(`/api/v1/jobs?${stateQuery([...STATE_GROUPS.finished])}&order=newest&limit=${FINISHED_SHOWN}`),
      ]);
    } catch (err) {
      this.showProblem(err, "The queue could not be loaded");
      return;
    }
    this.message.hidden = true;
    this.truncated = open.total > open.items.length;
    const seen = new Set();
    for (const job of [...open.items, ...finished.items]) {
      seen.add(job.id);
      this.jobs.set(job.id, job);
    }
    for (const id of this.jobs.keys()) {
      if (!seen.has(id)) this.jobs.delete(id);
    }
    this.render();
  }

  onMessage(frame) {
    if (frame.type !== "jobs") return;
    let changed = false;
    for (const job of frame.jobs || []) {
      const known = this.jobs.get(job.id);
      // A frame read before a REST answer that came later must not take the job back.
      if (known && known.updated_at > job.updated_at) continue;
      this.jobs.set(job.id, job);
      changed = true;
    }
    if (changed) this.queueRender();
  }

  queueRender() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => {
      this.renderQueued = false;
      this.render();
    });
  }

  matches(job) {
    if (!this.filter) return !STATE_GROUPS.finished.has(job.state);
    return STATE_GROUPS[this.filter].has(job.state);
  }

  waitingOrder() {
    return [...this.jobs.values()].filter(reorderable).sort(queueOrder);
  }

  render() {
    const shown = [...this.jobs.values()].filter((job) => this.matches(job)).sort(pageOrder);
    const focused = document.activeElement;
    const ctx = {
      canQueue: this.canQueue,
      printerName: (serial) => this.printerName(serial),
      plateOf: (sha, plate) => this.plateOf(sha, plate),
    };
    const keep = new Set(shown.map((job) => job.id));
    for (const [id, row] of this.rows) {
      if (!keep.has(id)) {
        row.remove();
        this.rows.delete(id);
      }
    }
    const waiting = this.waitingOrder();
    shown.forEach((job, index) => {
      let row = this.rows.get(job.id);
      if (!row) {
        row = new JobRow();
        row.setup(job, ctx);
        this.rows.set(job.id, row);
      } else if (row.job !== job) {
        row.update(job);
      }
      const place = waiting.indexOf(job);
      row.setEdges(place === 0, place === waiting.length - 1);
      const here = this.list.children[index];
      if (here !== row) this.list.insertBefore(row, here || null);
    });
    // Moving a row drops the focus inside it: put it back where it was.
    if (focused instanceof HTMLElement && focused !== document.activeElement && focused.isConnected) {
      focused.focus();
    }
    const open = [...this.jobs.values()].filter((job) => !STATE_GROUPS.finished.has(job.state));
    const active = open.filter((job) => STATE_GROUPS.active.has(job.state)).length;
    setText(
      this.summary,
      `${active} on printers, ${open.length - active} waiting${this.truncated ? " (the first 1,000 open jobs are shown)" : ""}`,
    );
    this.empty.hidden = shown.length > 0;
    setText(this.empty, this.filter === "finished" ? "No finished jobs yet." : "No jobs here. Queue a file from the library.");
  }

  setFilter(key) {
    this.filter = key;
    for (const [name, button] of Object.entries(this.filterButtons)) button.setAttribute("aria-pressed", String(name === key));
    this.render();
  }

  // ------------------------------------------------------------------ actions

  async act(action, job, row) {
    if (action === "why") return this.explain(job, row);
    if (action === "up" || action === "down") return this.move(job, action === "up" ? -1 : 1);
    if (action === "cancel") {
      const sure = await confirmAction({
        title: "Cancel this job?",
        message: job.printer
          ? `"${job.name}" is on ${this.printerName(job.printer)}: cancelling stops that print.`
          : `"${job.name}" leaves the queue. You can retry it later.`,
        confirmLabel: "Cancel job",
        danger: true,
      });
      if (!sure) return;
    }
    const paths = { cancel: "cancel", retry: "retry", duplicate: "duplicate" };
    if (!paths[action]) return;
    try {
      const answer = await api(`/api/v1/jobs/${job.id}/${paths[action]}`, { method: "POST" });
      for (const changed of answer.jobs || [answer]) this.jobs.set(changed.id, changed);
      this.message.hidden = true;
      this.announce(
        { cancel: `${job.name} cancelled`, retry: `${job.name} queued again`, duplicate: `${job.name} queued again as a new job` }[action],
      );
      this.render();
    } catch (err) {
      this.showProblem(err, `Could not ${action} "${job.name}"`);
    }
  }

  async explain(job, row) {
    try {
      const detail = await api(`/api/v1/jobs/${job.id}`);
      row.showWhy(detail.waiting_reasons);
    } catch (err) {
      if (!handleSessionProblem(err)) row.showWhy([], err.message);
    }
  }

  /** Move `job` one place up (-1) or down (+1) among the waiting jobs. */
  async move(job, step) {
    const order = this.waitingOrder();
    const from = order.findIndex((j) => j.id === job.id);
    const to = from + step;
    if (from < 0 || to < 0 || to >= order.length) return;
    await this.moveTo(job, to);
  }

  /** Put `job` at index `to` of the waiting jobs (as they would be without it, then it). */
  async moveTo(job, to) {
    const others = this.waitingOrder().filter((j) => j.id !== job.id);
    const anchor = others[to];
    // Before the job now at `to` (taking its priority), or after the last one.
    const body = anchor ? { before: anchor.id } : { before: null, priority: others.at(-1)?.priority ?? job.priority };
    try {
      await api(`/api/v1/jobs/${job.id}/reorder`, { method: "POST", body });
      this.message.hidden = true;
      // Moving one job can renumber others: the whole open list is read again.
      await this.load();
      const place = this.waitingOrder().findIndex((j) => j.id === job.id);
      this.announce(`${job.name} moved to place ${place + 1} of ${this.waitingOrder().length} in the waiting queue`);
    } catch (err) {
      this.showProblem(err, `Could not move "${job.name}"`);
    }
  }

  async addJob() {
    const created = await openJobDialog();
    if (!created || !created.length) return;
    for (const job of created) this.jobs.set(job.id, job);
    this.announce(created.length === 1 ? `${created[0].name} queued` : `${created.length} copies of ${created[0].name} queued`);
    this.render();
  }

  // ------------------------------------------------------------------ drag and drop

  setupDrag() {
    this.list.addEventListener("dragstart", (event) => {
      const row = event.target.closest?.("job-row");
      if (!row || !reorderable(row.job)) return;
      this.dragged = row;
      row.classList.add("is-dragged");
      event.dataTransfer.effectAllowed = "move";
      event.dataTransfer.setData("text/plain", String(row.job.id));
    });
    this.list.addEventListener("dragend", () => {
      this.dragged?.classList.remove("is-dragged");
      this.dragged = null;
      this.clearDropMarks();
    });
    this.list.addEventListener("dragover", (event) => {
      const target = this.dropTarget(event);
      if (!target) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "move";
      this.clearDropMarks();
      target.row.classList.add(target.after ? "drop-after" : "drop-before");
    });
    this.list.addEventListener("drop", (event) => {
      const target = this.dropTarget(event);
      this.clearDropMarks();
      if (!target || !this.dragged) return;
      event.preventDefault();
      const job = this.dragged.job;
      const others = this.waitingOrder().filter((j) => j.id !== job.id);
      const index = others.findIndex((j) => j.id === target.row.job.id);
      this.moveTo(job, target.after ? index + 1 : index);
    });
  }

  dropTarget(event) {
    if (!this.dragged) return null;
    const row = event.target.closest?.("job-row");
    if (!row || row === this.dragged || !reorderable(row.job)) return null;
    const box = row.getBoundingClientRect();
    return { row, after: event.clientY > box.top + box.height / 2 };
  }

  clearDropMarks() {
    for (const row of this.list.querySelectorAll(".drop-before, .drop-after")) row.classList.remove("drop-before", "drop-after");
  }
}
