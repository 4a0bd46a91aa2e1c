// <job-row>: one job of the queue page. Built once per job, then `update(job)` rewrites only what
// changed. It shows the job (plate thumbnail, name, copy, target, priority, state, progress, the
// printer it runs on, why it waits) and, for operators, its controls; what a control does is
// the page's business: each button dispatches a "job-action" event with {action, job}.

import { h, replaceChildren, setText } from "./dom.js";
import { duration } from "./format.js";
import { plateThumbnail } from "./plate-summary.js";

export const STATE_LABELS = {
  queued: "Queued",
  waiting: "Waiting",
  uploading: "Uploading",
  starting: "Starting",
  printing: "Printing",
  paused: "Paused",
  awaiting_clear: "Plate to clear",
  done: "Done",
  failed: "Failed",
  cancelled: "Cancelled",
};
// The page's filters: which states each shows.
export const STATE_GROUPS = {
  active: new Set(["uploading", "starting", "printing", "paused", "awaiting_clear"]),
  waiting: new Set(["queued", "waiting"]),
  finished: new Set(["done", "failed", "cancelled"]),
};
// The pill colours of style.css, by state.
const PILL = {
  queued: "idle",
  waiting: "paused",
  uploading: "printing",
  starting: "printing",
  printing: "printing",
  paused: "paused",
  awaiting_clear: "paused",
  done: "idle",
  failed: "error",
  cancelled: "offline",
};

/** True when the job may still move in the queue. */
export function reorderable(job) {
  return STATE_GROUPS.waiting.has(job.state);
}

/** "Printer Bay 3", "Any P1S or X1C", "Any printer". */
export function targetText(target, printerName) {
  if (target.printer) return `Only ${printerName(target.printer)}`;
  if (target.model_names.length) return `Any ${target.model_names.join(" or ")}`;
  return "Any printer";
}

export class JobRow extends HTMLElement {
  /** Draw the row; `ctx` has canQueue, printerName(serial) and plateOf(sha256, plate). */
  setup(job, ctx) {
    this.ctx = ctx;
    this.setAttribute("role", "listitem");
    this.dataset.jobId = String(job.id);
    const nameId = `job-${job.id}-name`;
    this.setAttribute("aria-labelledby", nameId);
    this.thumb = h("div", { class: "job-thumb" });
    this.nameEl = h("h2", { id: nameId, class: "job-title" });
    this.copyEl = h("span", { class: "job-copy" });
    this.pill = h("span", { class: "pill", "data-field": "state" });
    this.facts = {
      target: h("dd", { "data-field": "target" }),
      priority: h("dd", { "data-field": "priority" }),
      printer: h("dd", { "data-field": "printer" }),
    };
    const fact = (label, dd) => h("div", {}, h("dt", {}, label), dd);
    this.progressFill = h("div", { class: "progress-fill" });
    this.progressBar = h("div", {
      class: "progress",
      role: "progressbar",
      "aria-valuemin": "0",
      "aria-valuemax": "100",
      "aria-label": `Progress of ${job.name}`,
    }, this.progressFill);
    this.progressText = h("p", { class: "job-progress-text", "data-field": "progress" });
    this.progressBox = h("div", { class: "job-progress" }, this.progressBar, this.progressText);
    this.reasonEl = h("p", { class: "job-reason", "data-field": "reason" });
    this.whyList = h("ul", { class: "why-list", "aria-live": "polite" });
    this.why = h("details", { class: "job-why" }, h("summary", {}, "Why, printer by printer"), this.whyList);
    this.why.addEventListener("toggle", () => {
      if (this.why.open) this.dispatch("why");
    });
    this.buttons = {};
    const actions = h("div", { class: "job-actions" });
    if (ctx.canQueue) {
      const button = (action, label, title, extra = "") => {
        const b = h(
          "button",
          { type: "button", class: `button button-small ${extra}`.trim(), "data-action": action, "aria-label": `${title} ${job.name}` },
          label,
        );
        b.addEventListener("click", () => this.dispatch(action));
        this.buttons[action] = b;
        actions.append(b);
      };
      button("up", "↑", "Move up:");
      button("down", "↓", "Move down:");
      button("retry", "Retry", "Retry");
      button("duplicate", "Duplicate", "Duplicate");
      button("cancel", "Cancel", "Cancel", "button-danger");
      this.buttons.up.title = "Move up (Alt+↑)";
      this.buttons.down.title = "Move down (Alt+↓)";
      this.addEventListener("keydown", (event) => {
        if (!event.altKey || !reorderable(this.job)) return;
        if (event.key === "ArrowUp" || event.key === "ArrowDown") {
          event.preventDefault();
          this.dispatch(event.key === "ArrowUp" ? "up" : "down");
        }
      });
    }
    replaceChildren(
      this,
      this.thumb,
      h(
        "div",
        { class: "job-main" },
        h("div", { class: "job-head" }, this.nameEl, this.copyEl, this.pill),
        h("dl", { class: "job-facts" }, fact("Target", this.facts.target), fact("Priority", this.facts.priority), fact("Printer", this.facts.printer)),
        this.progressBox,
        this.reasonEl,
        this.why,
      ),
      actions,
    );
    this.update(job);
  }

  dispatch(action) {
    this.dispatchEvent(new CustomEvent("job-action", { bubbles: true, detail: { action, job: this.job } }));
  }

  /** Show `job` (a JobOut); touches only what changed. */
  update(job) {
    const previous = this.job;
    this.job = job;
    this.dataset.state = job.state;
    const movable = this.ctx.canQueue && reorderable(job);
    this.draggable = movable;
    this.classList.toggle("is-movable", movable);
    setText(this.nameEl, job.name);
    setText(this.copyEl, `plate ${job.plate}${job.copies > 1 ? ` · copy ${job.copy_index} of ${job.copies}` : ""}`);
    setText(this.pill, STATE_LABELS[job.state] || job.state);
    this.pill.className = `pill pill-${PILL[job.state] || "idle"}`;
    setText(this.facts.target, targetText(job.target, this.ctx.printerName));
    setText(this.facts.priority, job.priority === 0 ? "Normal" : String(job.priority));
    setText(this.facts.printer, job.printer ? this.ctx.printerName(job.printer) : "—");

    const running = ["uploading", "printing", "paused"].includes(job.state) && job.progress !== null;
    this.progressBox.hidden = !running;
    if (running) {
      const width = `${Math.max(0, Math.min(100, job.progress))}%`;
      if (this.progressFill.style.width !== width) this.progressFill.style.width = width;
      this.progressBar.setAttribute("aria-valuenow", String(job.progress));
      setText(this.progressText, progressText(job));
    }
    const showReason = Boolean(job.reason) && !STATE_GROUPS.active.has(job.state) && job.state !== "done";
    setText(this.reasonEl, showReason ? job.reason : "");
    this.reasonEl.hidden = !showReason;
    this.why.hidden = job.state !== "waiting";
    if (this.why.hidden) this.why.open = false;
    else if (this.why.open && previous?.reason !== job.reason) this.dispatch("why");

    if (this.ctx.canQueue) {
      const b = this.buttons;
      b.up.hidden = b.down.hidden = !movable;
      b.cancel.hidden = STATE_GROUPS.finished.has(job.state);
      b.retry.hidden = !(job.state === "failed" || job.state === "cancelled");
      b.duplicate.hidden = !job.file_sha256;
    }
    if (!previous || previous.file_sha256 !== job.file_sha256 || previous.plate !== job.plate) this.drawThumb(job);
  }

  /** Set the first/last flags of the waiting list (Move up on the first is pointless). */
  setEdges(first, last) {
    if (!this.ctx.canQueue) return;
    this.buttons.up.disabled = first;
    this.buttons.down.disabled = last;
  }

  /** List the per-printer reasons of GET /api/v1/jobs/{id} (`reasons`), or a problem text. */
  showWhy(reasons, problem = null) {
    if (problem) {
      replaceChildren(this.whyList, h("li", { class: "why-problem" }, problem));
      return;
    }
    if (!reasons.length) {
      replaceChildren(this.whyList, h("li", {}, "No printer was looked at yet: the dispatcher has not had a round since."));
      return;
    }
    replaceChildren(
      this.whyList,
      reasons.map((r) => h("li", { "data-reason": r.reason }, h("strong", {}, this.ctx.printerName(r.printer)), `: ${r.detail}`)),
    );
  }

  async drawThumb(job) {
    if (!job.file_sha256) {
      replaceChildren(this.thumb, h("span", { class: "thumb thumb-none job-thumb-img", "aria-hidden": "true" }, "No file"));
      return;
    }
    const plate = await this.ctx.plateOf(job.file_sha256, job.plate);
    if (this.job.file_sha256 !== job.file_sha256) return;
    const image = plate
      ? plateThumbnail(job.file_sha256, plate, { size: 56, alt: `Plate ${job.plate} of ${job.name}` })
      : h("span", { class: "thumb thumb-none", "aria-hidden": "true" }, "No preview");
    image.classList.add("job-thumb-img");
    replaceChildren(this.thumb, image);
  }
}

function progressText(job) {
  if (job.state === "uploading") return `Sending the file: ${job.progress}%`;
  const parts = [`${job.progress}%`];
  if (job.layer !== null) parts.push(`layer ${job.layer}`);
  if (job.remaining_s !== null) parts.push(`${duration(job.remaining_s / 60) || "<1 min"} left`);
  return parts.join(" · ");
}

if (!customElements.get("job-row")) customElements.define("job-row", JobRow);
