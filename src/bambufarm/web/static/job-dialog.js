// The "queue a print" dialog, shared by the library and queue pages: pick a library file
// (when none is given), then its plate, copies, priority, an optional due time and where it
// may print. A native modal <dialog>: the browser keeps focus inside, Escape cancels, and
// every control is a labelled form control reachable with Tab. The server's answer to the
// POST decides; a refusal is shown in the dialog with the server's own detail.

import { api, ApiProblem, handleSessionProblem } from "./api.js";
import { h, replaceChildren, setText } from "./dom.js";
import { filamentList, plateThumbnail, predicted } from "./plate-summary.js";
import { fetchAllPrinters } from "./printer-source.js";

// storage.jobs.MAX_COPIES and MAX_PRIORITY: the API refuses beyond these.
const MAX_COPIES = 1000;
const MAX_PRIORITY = 1_000_000;
// Files offered per search: a name narrows it further; the picker is not a file browser.
const PICK_LIMIT = 30;
// Searching while typing: wait for a pause so each keystroke is not a request.
const SEARCH_DELAY_MS = 250;

/**
 * Open the dialog for `file` (a library file as GET /api/v1/library/files/{id} gives it), or
 * let the user pick one first. Resolves to the created jobs (the `jobs` of the API's answer,
 * one per copy) or null when cancelled.
 */
export function openJobDialog(file = null) {
  return new Promise((resolve) => {
    new JobDialog(file, resolve).open();
  });
}

function uid(prefix) {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

function fileFacts(file) {
  const parts = [file.model_name];
  if (file.nozzle_diameter) parts.push(`${file.nozzle_diameter} mm nozzle`);
  parts.push(file.plate_count === 1 ? "1 plate" : `${file.plate_count} plates`);
  const time = predicted(file.prediction_s);
  if (time) parts.push(time);
  return parts.join(" · ");
}

class JobDialog {
  constructor(file, resolve) {
    this.file = file;
    this.picked = file === null;
    this.resolve = resolve;
    this.result = null;
    this.id = uid("job-dialog");
    this.opener = document.activeElement;
    this.searchTimer = null;
    this.searchAbort = null;
    this.printers = null;
  }

  open() {
    this.heading = h("h2", { id: `${this.id}-title` });
    this.body = h("div", { class: "job-dialog-body" });
    this.dialog = h("dialog", { class: "job-dialog", "aria-labelledby": `${this.id}-title` }, this.heading, this.body);
    this.dialog.addEventListener("close", () => this.closed());
    document.body.append(this.dialog);
    this.dialog.showModal();
    if (this.file) this.showForm();
    else this.showPicker();
  }

  closed() {
    clearTimeout(this.searchTimer);
    this.searchAbort?.abort();
    this.dialog.remove();
    if (this.opener instanceof HTMLElement && this.opener.isConnected) this.opener.focus();
    this.resolve(this.result);
  }

  cancelButton() {
    return h("button", { type: "button", class: "button", onclick: () => this.dialog.close("cancel") }, "Cancel");
  }

  // ------------------------------------------------------------------ step 1: pick a file

  showPicker() {
    setText(this.heading, "Print a library file");
    const searchId = `${this.id}-search`;
    this.searchInput = h("input", {
      id: searchId,
      type: "search",
      autocomplete: "off",
      placeholder: "Part of the file name",
      "aria-controls": `${this.id}-files`,
    });
    this.searchInput.addEventListener("input", () => {
      clearTimeout(this.searchTimer);
      this.searchTimer = setTimeout(() => this.search(), SEARCH_DELAY_MS);
    });
    this.pickStatus = h("p", { class: "job-dialog-status", "aria-live": "polite" }, "Loading the library…");
    this.pickList = h("ul", { class: "pick-list", id: `${this.id}-files`, "aria-label": "Library files" });
    this.pickError = h("p", { class: "notice notice-error", role: "alert", hidden: true });
    replaceChildren(
      this.body,
      h("div", { class: "field" }, h("label", { for: searchId }, "Search the library"), this.searchInput),
      this.pickStatus,
      this.pickError,
      this.pickList,
      h("div", { class: "dialog-actions" }, this.cancelButton()),
    );
    this.searchInput.focus();
    this.search();
  }

  async search() {
    this.searchAbort?.abort();
    const abort = new AbortController();
    this.searchAbort = abort;
    const text = this.searchInput.value.trim();
    const query = new URLSearchParams({ limit: String(PICK_LIMIT) });
    if (text) query.set("search", text);
    let page;
    try {
      page = await api(`/api/v1/library/files?${query}`, { signal: abort.signal });
    } catch (err) {
      if (err.name === "AbortError" || handleSessionProblem(err)) return;
      this.pickError.textContent = `The library could not be searched: ${err.message}`;
      this.pickError.hidden = false;
      return;
    }
    this.pickError.hidden = true;
    const shown = page.items.length;
    if (shown === 0) setText(this.pickStatus, text ? `No file name contains “${text}”.` : "The library is empty: upload a sliced file first.");
    else if (page.total > shown) setText(this.pickStatus, `${page.total} files; the first ${shown} are shown — type to narrow.`);
    else setText(this.pickStatus, shown === 1 ? "1 file" : `${shown} files`);
    replaceChildren(
      this.pickList,
      page.items.map((file) => {
        const plate = file.plates[0];
        return h(
          "li",
          {},
          h(
            "button",
            { type: "button", class: "pick-file", "data-file-id": String(file.id), onclick: () => this.pick(file) },
            plate ? plateThumbnail(file.sha256, plate, { size: 48 }) : null,
            h("span", { class: "pick-name" }, file.name),
            h("span", { class: "pick-facts" }, fileFacts(file)),
          ),
        );
      }),
    );
  }

  pick(file) {
    this.file = file;
    this.showForm();
  }

  // ------------------------------------------------------------------ step 2: the job

  showForm() {
    const file = this.file;
    setText(this.heading, `Print ${file.name}`);
    const id = this.id;
    this.error = h("p", { class: "notice notice-error", role: "alert", hidden: true });

    const plates = h(
      "fieldset",
      { class: "plate-choice" },
      h("legend", {}, file.plates.length === 1 ? "Plate" : "Choose the plate"),
      file.plates.map((plate, i) => {
        const radioId = `${id}-plate-${plate.index}`;
        return h(
          "div",
          { class: "plate-option" },
          h("input", { type: "radio", name: `${id}-plate`, id: radioId, value: String(plate.index), checked: i === 0 }),
          h(
            "label",
            { for: radioId },
            plateThumbnail(file.sha256, plate, { size: 72, alt: `Preview of plate ${plate.index}` }),
            h(
              "span",
              { class: "plate-text" },
              h("strong", {}, `Plate ${plate.index}`),
              h("span", { class: "plate-time" }, predicted(plate.prediction_s) || "time unknown"),
              filamentList(plate.filaments, { compact: true }),
            ),
          ),
        );
      }),
    );

    this.copies = h("input", { id: `${id}-copies`, type: "number", min: 1, max: MAX_COPIES, step: 1, value: 1, required: true });
    this.priority = h("input", {
      id: `${id}-priority`,
      type: "number",
      min: -MAX_PRIORITY,
      max: MAX_PRIORITY,
      step: 1,
      value: 0,
      required: true,
      "aria-describedby": `${id}-priority-hint`,
    });
    this.due = h("input", { id: `${id}-due`, type: "datetime-local", "aria-describedby": `${id}-due-hint` });
    const numbers = h(
      "div",
      { class: "job-numbers" },
      h("div", { class: "field" }, h("label", { for: this.copies.id }, "Copies"), this.copies),
      h(
        "div",
        { class: "field" },
        h("label", { for: this.priority.id }, "Priority"),
        this.priority,
        h("span", { class: "hint", id: `${id}-priority-hint` }, "Higher goes first"),
      ),
      h(
        "div",
        { class: "field" },
        h("label", { for: this.due.id }, "Due (optional)"),
        this.due,
        h("span", { class: "hint", id: `${id}-due-hint` }, "Earlier due goes first"),
      ),
    );

    this.targetKind = "any";
    const kinds = [
      ["any", `Any compatible printer (${file.model_name})`],
      ["models", "Any printer of chosen models"],
      ["printer", "One printer"],
    ];
    this.modelBoxes = h("fieldset", { class: "target-detail", hidden: true }, h("legend", {}, "Models"));
    this.printerSelect = h("select", { id: `${id}-printer`, disabled: true }, h("option", { value: "" }, "Loading printers…"));
    this.printerField = h(
      "div",
      { class: "field target-detail", hidden: true },
      h("label", { for: this.printerSelect.id }, "Printer"),
      this.printerSelect,
    );
    const target = h(
      "fieldset",
      { class: "target-choice" },
      h("legend", {}, "Where it may print"),
      kinds.map(([value, label]) => {
        const radioId = `${id}-target-${value}`;
        const radio = h("input", { type: "radio", name: `${id}-target`, id: radioId, value, checked: value === "any" });
        radio.addEventListener("change", () => this.setTarget(value));
        return h("div", { class: "check" }, radio, h("label", { for: radioId }, label));
      }),
      this.modelBoxes,
      this.printerField,
    );

    this.submit = h("button", { type: "submit", class: "button button-primary" }, "Queue 1 copy");
    this.copies.addEventListener("input", () => this.labelSubmit());
    const back = this.picked
      ? h("button", { type: "button", class: "button", onclick: () => this.showPicker() }, "Choose another file")
      : null;
    const form = h(
      "form",
      { class: "job-form" },
      h("p", { class: "job-dialog-sub" }, fileFacts(file)),
      plates,
      numbers,
      target,
      this.error,
      h("div", { class: "dialog-actions" }, back, this.cancelButton(), this.submit),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send(form);
    });
    replaceChildren(this.body, form);
    const firstRadio = plates.querySelector("input");
    (file.plates.length > 1 ? firstRadio : this.copies)?.focus();
    this.loadPrinters();
  }

  labelSubmit() {
    const n = Number.parseInt(this.copies.value, 10);
    setText(this.submit, Number.isFinite(n) && n > 1 ? `Queue ${n} copies` : "Queue 1 copy");
  }

  setTarget(kind) {
    this.targetKind = kind;
    this.modelBoxes.hidden = kind !== "models";
    this.printerField.hidden = kind !== "printer";
  }

  async loadPrinters() {
    try {
      this.printers = await fetchAllPrinters();
    } catch (err) {
      if (handleSessionProblem(err)) return;
      this.printers = [];
      this.showError(`The printers could not be loaded (${err.message}); "Any compatible printer" still works.`);
    }
    if (!this.dialog.open) return;
    const file = this.file;
    const models = new Map([[file.model, file.model_name]]);
    for (const p of this.printers) models.set(p.model, p.model_name);
    const modelItems = [...models].sort((a, b) => a[1].localeCompare(b[1]));
    this.modelBoxes.replaceChildren(
      h("legend", {}, "Models"),
      ...modelItems.map(([code, name]) => {
        const boxId = `${this.id}-model-${code}`;
        const fits = code === file.model;
        return h(
          "div",
          { class: "check" },
          h("input", { type: "checkbox", id: boxId, value: code, checked: fits, disabled: !fits }),
          h("label", { for: boxId }, fits ? name : `${name} (the file is sliced for ${file.model_name})`),
        );
      }),
    );
    const sorted = [...this.printers].sort(
      (a, b) => Number(b.model === file.model) - Number(a.model === file.model) || a.name.localeCompare(b.name, undefined, { numeric: true }),
    );
    const fitting = sorted.filter((p) => p.model === file.model).length;
    replaceChildren(
      this.printerSelect,
      h("option", { value: "" }, fitting ? "Choose a printer" : `No ${file.model_name} in the farm`),
      sorted.map((p) => {
        const fits = p.model === file.model;
        return h(
          "option",
          { value: p.serial, disabled: !fits },
          fits ? `${p.name} (${p.model_name})` : `${p.name} (${p.model_name}: file sliced for ${file.model_name})`,
        );
      }),
    );
    this.printerSelect.disabled = false;
  }

  showError(text) {
    this.error.textContent = text;
    this.error.hidden = !text;
  }

  targetBody() {
    if (this.targetKind === "models") {
      const models = [...this.modelBoxes.querySelectorAll("input:checked")].map((box) => box.value);
      if (models.length === 0) throw new Error("choose at least one model, or another kind of target");
      return { models };
    }
    if (this.targetKind === "printer") {
      if (!this.printerSelect.value) throw new Error("choose the printer, or another kind of target");
      return { printer: this.printerSelect.value };
    }
    return {};
  }

  async send(form) {
    this.showError("");
    if (!form.reportValidity()) return;
    let body;
    try {
      const plate = form.querySelector(`input[name="${this.id}-plate"]:checked`);
      body = {
        file_id: this.file.id,
        plate: Number.parseInt(plate?.value || "1", 10),
        copies: Number.parseInt(this.copies.value, 10),
        priority: Number.parseInt(this.priority.value, 10),
        target: this.targetBody(),
      };
      if (this.due.value) {
        const due = new Date(this.due.value);
        if (Number.isNaN(due.getTime())) throw new Error("the due time is not a date and time");
        body.due = due.toISOString();
      }
    } catch (err) {
      this.showError(`Not queued: ${err.message}.`);
      return;
    }
    this.submit.disabled = true;
    setText(this.submit, "Queueing…");
    try {
      const answer = await api("/api/v1/jobs", { method: "POST", body });
      this.result = answer.jobs;
      this.dialog.close("queued");
    } catch (err) {
      if (handleSessionProblem(err)) return;
      const detail = err instanceof ApiProblem ? err.detail || err.title : err.message;
      this.showError(`Not queued: ${detail}`);
      this.submit.disabled = false;
      this.labelSubmit();
    }
  }
}
