// <printer-card>: one printer on the dashboard. Built once, then `update(view)` changes only
// the text and attributes that differ, so a fleet of hundreds updating every second stays cheap.
// `setQueue({plate, job})` adds what the queue knows: a "plate not cleared" badge with its Clear
// button (operators; confirmed) and, when the print is one of ours, the job's name and plate
// thumbnail. With `selectable`, a box picks the printer for the dashboard's bulk actions
// (bulk-actions.js); the card says so with a bubbling `select-change` event.

import { api, handleSessionProblem } from "./api.js";
import { confirmAction } from "./confirm-dialog.js";
import { h, replaceChildren, setText } from "./dom.js";
import { degrees, duration, etaClock, percent, targetDegrees, trayColour } from "./format.js";
import { ACTION_LABELS, commandFromButton } from "./printer-actions.js";
import { plateThumbnail } from "./plate-summary.js";
import { availableActions, hasPrintError, printErrorText, stateLabel, trayInUse, unitLabel } from "./printer-model.js";

const OUTCOME_TEXT = { finished: "the last print finished", failed: "the last print failed" };

export class PrinterCard extends HTMLElement {
  /**
   * Draw the card for `view`; `canControl` decides whether control buttons exist at all;
   * `plateOf(sha256, plate)` resolves a library plate (for its thumbnail) or null;
   * `selectable` draws the box that picks it for bulk actions.
   */
  setup(view, { canControl, plateOf = null, selectable = false }) {
    this.canControl = canControl;
    this.plateOf = plateOf;
    this.queue = { plate: null, job: null };
    this.setAttribute("role", "listitem");
    this.dataset.serial = view.serial;
    const nameId = `printer-${view.serial}-name`;
    this.setAttribute("aria-labelledby", nameId);
    this.link = h("a", { href: `/printers/${encodeURIComponent(view.serial)}` });
    this.modelLine = h("div", { class: "card-model" });
    this.pill = h("span", { class: "pill" });
    this.reason = h("p", { class: "conn-reason" });
    this.badges = h("div", { class: "badges" });
    this.plateBadge = h("div", { class: "badges", "data-field": "plate", hidden: true });
    this.jobName = h("p", { class: "job-name" });
    this.queueThumb = h("span", { class: "card-thumb", hidden: true });
    this.fill = h("div", { class: "progress-fill" });
    this.bar = h("div", {
      class: "progress",
      role: "progressbar",
      "aria-valuemin": "0",
      "aria-valuemax": "100",
      "aria-label": `Progress of ${view.name}`,
    }, this.fill);
    this.meta = {
      progress: h("dd", { "data-field": "progress" }),
      layer: h("dd", { "data-field": "layer" }),
      remaining: h("dd", { "data-field": "remaining" }),
      eta: h("dd", { "data-field": "eta" }),
    };
    const metaRow = (label, dd) => h("div", {}, h("dt", {}, label), dd);
    this.temps = {
      nozzle: h("dd", { "data-field": "nozzle" }),
      bed: h("dd", { "data-field": "bed" }),
      chamber: h("dd", { "data-field": "chamber" }),
    };
    const tempBox = (label, dd) => h("div", {}, h("dt", {}, label), dd);
    this.trays = h("ul", { class: "trays", "aria-label": `Filament of ${view.name}` });
    this.actions = h("div", { class: "card-actions" });
    this.actionError = h("p", { class: "action-error", role: "status", hidden: true });
    this.selectBox = null;
    this.selectName = null;
    if (selectable) {
      this.selectBox = h("input", { type: "checkbox", class: "card-select-box" });
      this.selectName = h("span", { class: "visually-hidden" });
      this.selectBox.addEventListener("change", () => {
        this.classList.toggle("is-selected", this.selectBox.checked);
        const detail = { serial: this.view.serial, selected: this.selectBox.checked };
        this.dispatchEvent(new CustomEvent("select-change", { bubbles: true, detail }));
      });
    }
    this.buttons = {};
    if (canControl) {
      for (const command of ["pause", "resume", "stop"]) {
        const button = h(
          "button",
          {
            type: "button",
            class: command === "stop" ? "button button-small button-danger" : "button button-small",
            "data-action": command,
            "aria-label": `${ACTION_LABELS[command]} ${view.name}`,
          },
          ACTION_LABELS[command],
        );
        button.addEventListener("click", () => commandFromButton(button, this.view, command, this.actionError));
        this.buttons[command] = button;
        this.actions.append(button);
      }
    }
    replaceChildren(
      this,
      h(
        "div",
        { class: "card-head" },
        this.selectBox ? h("label", { class: "card-select" }, this.selectBox, this.selectName) : null,
        h("div", { class: "card-title" }, h("h2", { id: nameId }, this.link), this.modelLine),
        this.pill,
      ),
      this.reason,
      this.badges,
      this.plateBadge,
      h(
        "div",
        { class: "card-job" },
        h("div", { class: "card-queue" }, this.queueThumb, this.jobName),
        this.bar,
        h(
          "dl",
          { class: "job-meta" },
          metaRow("Done", this.meta.progress),
          metaRow("Layer", this.meta.layer),
          metaRow("Left", this.meta.remaining),
          metaRow("ETA", this.meta.eta),
        ),
      ),
      h(
        "dl",
        { class: "temps", "aria-label": `Temperatures of ${view.name}` },
        tempBox("Nozzle", this.temps.nozzle),
        tempBox("Bed", this.temps.bed),
        tempBox("Chamber", this.temps.chamber),
      ),
      this.trays,
      this.actions,
      this.actionError,
    );
    this.update(view);
  }

  /** Show `view` (a printerView); touches only what changed. */
  update(view) {
    const previous = this.view;
    this.view = view;
    this.dataset.category = view.category;
    this.dataset.model = view.model;
    setText(this.link, view.name);
    if (this.selectName) setText(this.selectName, `Select ${view.name}`);
    setText(this.modelLine, view.name === view.serial ? view.model : `${view.model} · ${view.serial}`);
    setText(this.pill, stateLabel(view));
    this.pill.className = `pill pill-${view.category}`;
    const showReason = view.connection.state !== "online" && view.connection.reason;
    setText(this.reason, showReason ? view.connection.reason : "");
    this.reason.hidden = !showReason;

    if (!previous || badgeKey(previous) !== badgeKey(view)) this.drawBadges(view);

    const job = view.job;
    const name = this.queue.job?.name || job.name;
    setText(this.jobName, name || "No job");
    this.jobName.classList.toggle("job-none", !name);
    this.jobName.title = name || "";
    const progress = job.progress ?? 0;
    const width = `${Math.max(0, Math.min(100, progress))}%`;
    if (this.fill.style.width !== width) this.fill.style.width = width;
    this.bar.setAttribute("aria-valuenow", String(progress));
    setText(this.meta.progress, percent(job.progress) || "—");
    setText(this.meta.layer, job.layer !== null && job.totalLayers ? `${job.layer}/${job.totalLayers}` : "—");
    const printing = view.category === "printing" || view.category === "paused";
    setText(this.meta.remaining, printing ? duration(job.remainingMinutes) || "—" : "—");
    setText(this.meta.eta, view.category === "printing" ? etaClock(job.remainingMinutes) || "—" : "—");

    const t = view.temps;
    setTemp(this.temps.nozzle, t.nozzle, t.nozzleTarget);
    setTemp(this.temps.bed, t.bed, t.bedTarget);
    if (view.chamberSensor) setTemp(this.temps.chamber, t.chamber, t.chamberTarget);
    else setTemp(this.temps.chamber, null, null);

    if (!previous || trayKey(previous) !== trayKey(view)) this.drawTrays(view);

    if (this.canControl) showAllowed(this.buttons, view);
  }

  /** True when the printer is picked for bulk actions. */
  get selected() {
    return Boolean(this.selectBox?.checked);
  }

  set selected(value) {
    if (!this.selectBox || this.selectBox.checked === Boolean(value)) return;
    this.selectBox.checked = Boolean(value);
    this.classList.toggle("is-selected", Boolean(value));
  }

  /** Show why a command failed on this card (empty text hides it). */
  showActionError(text) {
    this.actionError.textContent = text;
    this.actionError.hidden = !text;
  }

  /** What the queue knows of this printer: its plate state (or null) and its job (or null). */
  setQueue({ plate, job }) {
    const before = this.queue;
    this.queue = { plate, job };
    const uncleared = plate && !plate.cleared ? plate : null;
    const was = before.plate && !before.plate.cleared ? before.plate : null;
    if (uncleared?.updated_at !== was?.updated_at || Boolean(uncleared) !== Boolean(was)) this.drawPlate(uncleared);
    if (job?.file_sha256 !== before.job?.file_sha256 || job?.plate !== before.job?.plate) this.drawThumb(job);
    if (job?.name !== before.job?.name) this.update(this.view);
  }

  drawPlate(plate) {
    this.plateBadge.hidden = !plate;
    if (!plate) {
      replaceChildren(this.plateBadge);
      return;
    }
    const name = this.view.name;
    const clear = this.canControl
      ? h("button", { type: "button", class: "button button-small", "data-action": "clear-plate", "aria-label": `Clear the plate of ${name}` }, "Clear")
      : null;
    clear?.addEventListener("click", () => this.clearPlate(clear));
    replaceChildren(
      this.plateBadge,
      h(
        "span",
        { class: "badge badge-plate", title: `The plate must be cleared before the next job: ${OUTCOME_TEXT[plate.last_outcome] || "a print ended"}` },
        h("strong", {}, "Plate not cleared"),
        h("span", { class: "badge-text" }, OUTCOME_TEXT[plate.last_outcome] || ""),
        clear,
      ),
    );
  }

  async clearPlate(button) {
    const name = this.view.name;
    const sure = await confirmAction({
      title: `Clear the plate of ${name}?`,
      message: `Confirm the build plate of ${name} is empty. The next job in the queue may start on it at once.`,
      confirmLabel: "Plate is clear",
    });
    if (!sure) return;
    button.disabled = true;
    this.actionError.hidden = true;
    try {
      const answer = await api(`/api/v1/printers/${encodeURIComponent(this.view.serial)}/plate/clear`, { method: "POST" });
      this.dispatchEvent(new CustomEvent("plate-changed", { bubbles: true, detail: answer.plate }));
    } catch (err) {
      if (handleSessionProblem(err)) return;
      this.actionError.textContent = `The plate could not be cleared: ${err.message}`;
      this.actionError.hidden = false;
      button.disabled = false;
    }
  }

  async drawThumb(job) {
    const plate = job?.file_sha256 && this.plateOf ? await this.plateOf(job.file_sha256, job.plate) : null;
    if (this.queue.job?.file_sha256 !== job?.file_sha256) return;
    this.queueThumb.hidden = !plate;
    replaceChildren(this.queueThumb, plate ? plateThumbnail(job.file_sha256, plate, { size: 40, alt: `Plate ${job.plate} of ${job.name}` }) : null);
  }

  drawBadges(view) {
    const badges = view.hms.map((entry) =>
      h(
        "span",
        { class: `badge badge-hms-${entry.severity}`, title: entry.text || entry.code, "data-hms": entry.code },
        h("strong", {}, "HMS"),
        h("span", { class: "badge-text" }, entry.text || "Unknown HMS code"),
        // The decoded text often names the code already; say it once.
        entry.text.includes(entry.code) ? null : h("code", {}, entry.code),
      ),
    );
    if (hasPrintError(view)) {
      badges.push(
        h(
          "span",
          { class: "badge badge-hms-serious", title: `The printer stopped the job with error ${printErrorText(view.job.printError)}` },
          h("strong", {}, "Error"),
          h("code", {}, printErrorText(view.job.printError)),
        ),
      );
    }
    if (view.hmsCount > view.hms.length) {
      badges.push(h("span", { class: "badge badge-hms-unknown" }, h("strong", {}, "HMS"), `${view.hmsCount} active`));
    }
    if (view.readOnly) {
      badges.push(
        h("span", {
          class: "badge badge-readonly",
          title: "Developer Mode is off: the printer reports but refuses LAN commands",
        }, "Read-only"),
      );
    }
    replaceChildren(this.badges, badges);
  }

  drawTrays(view) {
    const trays = [...view.ams.units.flatMap((unit) => unit.trays), ...view.ams.external];
    replaceChildren(
      this.trays,
      trays.map((tray) => {
        // An empty slot keeps the colour of its last spool on some firmware: show it empty.
        const colour = tray.type ? trayColour(tray.color) : null;
        const swatch = h("span", { class: colour ? "swatch" : "swatch swatch-empty", "aria-hidden": "true" });
        if (colour) swatch.style.backgroundColor = colour;
        const where = tray.unit === null ? "External" : `${unitLabel(tray.unit)} slot ${tray.id + 1}`;
        const label = tray.type ? `${where}: ${tray.type}${tray.remain !== null && tray.remain >= 0 ? `, ${tray.remain}% left` : ""}` : `${where}: empty`;
        return h(
          "li",
          { class: "tray", title: label, "aria-label": label, "data-active": String(trayInUse(tray, view.ams.trayNow)) },
          swatch,
          h("span", { "aria-hidden": "true" }, tray.type ? percent(tray.remain) || tray.type : "—"),
        );
      }),
    );
    this.trays.hidden = trays.length === 0;
  }
}

/** Show the buttons the printer's state allows; keep the keyboard focus inside the group. */
export function showAllowed(buttons, view) {
  const allowed = availableActions(view);
  const all = Object.values(buttons);
  const hadFocus = all.includes(document.activeElement);
  for (const [command, button] of Object.entries(buttons)) {
    const hidden = !allowed[command] || view.readOnly;
    if (button.hidden !== hidden) button.hidden = hidden;
  }
  // Pause turns into Resume under the user's finger: follow it rather than drop the focus.
  if (hadFocus && document.activeElement?.hidden !== false) {
    all.find((button) => !button.hidden)?.focus();
  }
}

function setTemp(dd, value, target) {
  const text = degrees(value);
  const goal = targetDegrees(target);
  const key = `${text}${goal}`;
  if (dd.dataset.key === key) return;
  dd.dataset.key = key;
  replaceChildren(dd, text, goal ? h("span", { class: "target" }, goal) : null);
}

function badgeKey(view) {
  return `${view.readOnly}|${view.job.printError}|${view.hmsCount}|${view.hms.map((e) => `${e.code}:${e.severity}:${e.text}`).join(",")}`;
}

function trayKey(view) {
  const trays = [...view.ams.units.flatMap((unit) => unit.trays), ...view.ams.external];
  return `${view.ams.trayNow}|${trays.map((t) => `${t.unit}.${t.id}:${t.type}:${t.color}:${t.remain}`).join(",")}`;
}
