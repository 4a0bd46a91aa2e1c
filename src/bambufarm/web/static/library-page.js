// <library-page>: the farm's sliced files as cards (or a compact list) with their plate
// thumbnail, printer model, nozzle, plates, predicted time and filaments; search, folder and
// tag filters; upload by drag and drop or file picker (<library-upload>); and per file "Print"
// (the job dialog), edit (name, folder, tags) and delete (confirmed). Viewers only look:
// upload, print, edit and delete are drawn for operators and admins alone.

import { api, handleSessionProblem } from "./api.js";
import { confirmAction } from "./confirm-dialog.js";
import { h, replaceChildren, setText } from "./dom.js";
import { openJobDialog } from "./job-dialog.js";
import { editFile } from "./library-edit.js";
import "./library-upload.js";
import { filamentList, grams, plateThumbnail, predicted } from "./plate-summary.js";

const VIEW_KEY = "bf-library-view";
// Files per request; "Show more" asks for the next page.
const PAGE = 60;
const SEARCH_DELAY_MS = 250;
const ALL_FOLDERS = "\u0000all";

/** A file's filaments over all its plates: one entry per slot, grams added up. */
function fileFilaments(file) {
  const bySlot = new Map();
  for (const plate of file.plates) {
    for (const f of plate.filaments) {
      const seen = bySlot.get(f.slot);
      if (!seen) bySlot.set(f.slot, { ...f });
      else if (f.grams !== null && f.grams !== undefined) seen.grams = (seen.grams ?? 0) + f.grams;
    }
  }
  return [...bySlot.values()].sort((a, b) => a.slot - b.slot);
}

function savedView() {
  try {
    return window.localStorage.getItem(VIEW_KEY) === "list" ? "list" : "grid";
  } catch {
    return "grid";
  }
}

export class LibraryPage extends HTMLElement {
  connectedCallback() {
    if (this.grid) return;
    const role = document.body.dataset.role;
    this.canChange = role === "operator" || role === "admin";
    this.filter = { search: "", folder: ALL_FOLDERS, tag: "" };
    this.files = [];
    this.total = 0;
    this.view = savedView();
    this.build();
    this.loadFolders();
    this.load();
  }

  disconnectedCallback() {
    this.abort?.abort();
    clearTimeout(this.searchTimer);
  }

  build() {
    this.summary = h("p", { class: "library-summary", "aria-live": "polite" }, "Loading…");
    this.message = h("div", { class: "notice notice-error", role: "alert", hidden: true });
    this.notice = h("div", { class: "notice notice-info", role: "status", hidden: true });

    let upload = null;
    if (this.canChange) {
      upload = h("library-upload", {});
      upload.addEventListener("uploaded", () => {
        this.loadFolders();
        this.load();
      });
      this.upload = upload;
    }

    this.searchInput = h("input", { id: "library-search", type: "search", placeholder: "Part of the name", autocomplete: "off" });
    this.searchInput.addEventListener("input", () => {
      clearTimeout(this.searchTimer);
      this.searchTimer = setTimeout(() => {
        this.filter.search = this.searchInput.value.trim();
        this.load();
      }, SEARCH_DELAY_MS);
    });
    this.folderSelect = h("select", { id: "library-folder" }, h("option", { value: ALL_FOLDERS }, "All folders"));
    this.folderSelect.addEventListener("change", () => {
      this.filter.folder = this.folderSelect.value;
      this.upload?.setFolder(this.filter.folder === ALL_FOLDERS ? "" : this.filter.folder);
      this.load();
    });
    this.tagChip = h("span", { class: "tag-filter", hidden: true });
    this.viewButtons = {
      grid: h("button", { type: "button", "aria-pressed": String(this.view === "grid") }, "Cards"),
      list: h("button", { type: "button", "aria-pressed": String(this.view === "list") }, "List"),
    };
    for (const [view, button] of Object.entries(this.viewButtons)) {
      button.addEventListener("click", () => this.setView(view));
    }
    const toolbar = h(
      "div",
      { class: "toolbar library-toolbar" },
      h("div", { class: "field field-search" }, h("label", { for: "library-search" }, "Search"), this.searchInput),
      h("div", { class: "field" }, h("label", { for: "library-folder" }, "Folder"), this.folderSelect),
      this.tagChip,
      h("div", { class: "field" }, h("span", { class: "field-label", id: "library-view-label" }, "View"),
        h("div", { class: "view-switch", role: "group", "aria-labelledby": "library-view-label" }, this.viewButtons.grid, this.viewButtons.list)),
    );

    this.grid = h("ul", { class: `library-grid${this.view === "list" ? " is-list" : ""}`, "aria-label": "Library files" });
    this.more = h("button", { type: "button", class: "button library-more", hidden: true }, "Show more");
    this.more.addEventListener("click", () => this.load({ append: true }));
    replaceChildren(
      this,
      h("div", { class: "page-head" }, h("h1", {}, "Library"), this.summary),
      upload,
      this.message,
      this.notice,
      toolbar,
      this.grid,
      this.more,
    );
  }

  setView(view) {
    this.view = view;
    this.grid.classList.toggle("is-list", view === "list");
    for (const [key, button] of Object.entries(this.viewButtons)) button.setAttribute("aria-pressed", String(key === view));
    try {
      window.localStorage.setItem(VIEW_KEY, view);
    } catch {
      // Storage switched off: the choice holds for this page only.
    }
  }

  showError(text) {
    this.message.textContent = text;
    this.message.hidden = !text;
  }

  showNotice(...content) {
    replaceChildren(this.notice, ...content);
    this.notice.hidden = content.length === 0;
  }

  async loadFolders() {
    try {
      const { folders } = await api("/api/v1/library/folders");
      const current = this.folderSelect.value;
      replaceChildren(
        this.folderSelect,
        h("option", { value: ALL_FOLDERS }, "All folders"),
        h("option", { value: "" }, "Top level only"),
        folders.map((f) => h("option", { value: f }, f)),
      );
      this.folderSelect.value = [...this.folderSelect.options].some((o) => o.value === current) ? current : ALL_FOLDERS;
    } catch (err) {
      if (!handleSessionProblem(err)) this.showError(`The folders could not be loaded: ${err.message}`);
    }
  }

  async load({ append = false } = {}) {
    this.abort?.abort();
    const abort = new AbortController();
    this.abort = abort;
    const query = new URLSearchParams({ offset: String(append ? this.files.length : 0), limit: String(PAGE) });
    if (this.filter.search) query.set("search", this.filter.search);
    if (this.filter.folder !== ALL_FOLDERS) query.set("folder", this.filter.folder);
    if (this.filter.tag) query.set("tag", this.filter.tag);
    let page;
    try {
      page = await api(`/api/v1/library/files?${query}`, { signal: abort.signal });
    } catch (err) {
      if (err.name === "AbortError" || handleSessionProblem(err)) return;
      this.showError(`The library could not be loaded: ${err.message}`);
      return;
    }
    this.showError("");
    this.files = append ? [...this.files, ...page.items] : page.items;
    this.total = page.total;
    this.render(append ? page.items : null);
  }

  render(added) {
    const filtered = this.filter.search || this.filter.tag || this.filter.folder !== ALL_FOLDERS;
    if (this.total === 0) {
      setText(this.summary, filtered ? "No file matches these filters." : "No files yet.");
    } else {
      setText(this.summary, this.total === 1 ? "1 file" : `${this.total} files${this.files.length < this.total ? `, ${this.files.length} shown` : ""}`);
    }
    if (added) {
      this.grid.append(...added.map((f) => this.card(f)));
    } else if (this.files.length === 0) {
      const hint = this.canChange && !filtered ? "Drop a sliced .gcode.3mf above to add the first file." : "";
      replaceChildren(this.grid, h("li", { class: "empty" }, filtered ? "No file matches." : "The library is empty.", hint ? h("br") : null, hint));
    } else {
      replaceChildren(this.grid, this.files.map((f) => this.card(f)));
    }
    this.more.hidden = this.files.length >= this.total;
  }

  card(file) {
    const first = file.plates[0];
    const facts = [
      ["Printer", file.model_name],
      ["Nozzle", file.nozzle_diameter ? `${file.nozzle_diameter} mm` : ""],
      ["Plates", String(file.plate_count)],
      ["Time", predicted(file.prediction_s)],
      ["Weight", grams(file.weight_g)],
    ].filter(([, value]) => value);
    const tags = file.tags.length
      ? h(
          "ul",
          { class: "tags", "aria-label": "Tags" },
          file.tags.map((tag) =>
            h("li", {}, h("button", { type: "button", class: "tag", title: `Show files tagged ${tag}`, onclick: () => this.setTag(tag) }, tag)),
          ),
        )
      : null;
    const actions = this.canChange
      ? h(
          "div",
          { class: "file-actions" },
          h("button", { type: "button", class: "button button-primary button-small", onclick: () => this.print(file) }, "Print", h("span", { class: "visually-hidden" }, ` ${file.name}`)),
          h("button", { type: "button", class: "button button-small", onclick: () => this.edit(file) }, "Edit", h("span", { class: "visually-hidden" }, ` ${file.name}`)),
          h("button", { type: "button", class: "button button-danger button-small", onclick: () => this.remove(file) }, "Delete", h("span", { class: "visually-hidden" }, ` ${file.name}`)),
        )
      : null;
    return h(
      "li",
      { class: "library-file", "data-file-id": String(file.id) },
      first ? plateThumbnail(file.sha256, first, { size: 120, alt: `Preview of ${file.name}` }) : null,
      h(
        "div",
        { class: "file-main" },
        h("h2", { class: "file-name" }, file.name),
        file.folder ? h("p", { class: "file-folder" }, `in ${file.folder}`) : null,
        h("dl", { class: "file-facts" }, facts.map(([label, value]) => h("div", { "data-fact": label.toLowerCase() }, h("dt", {}, label), h("dd", {}, value)))),
        filamentList(fileFilaments(file)),
        tags,
      ),
      actions,
    );
  }

  setTag(tag) {
    this.filter.tag = tag;
    const clear = h("button", { type: "button", class: "button button-small", "aria-label": `Stop filtering by tag ${tag}` }, "×");
    clear.addEventListener("click", () => {
      this.filter.tag = "";
      this.tagChip.hidden = true;
      this.searchInput.focus();
      this.load();
    });
    replaceChildren(this.tagChip, h("span", {}, "Tag: ", h("strong", {}, tag)), clear);
    this.tagChip.hidden = false;
    this.load();
  }

  async print(file) {
    const jobs = await openJobDialog(file);
    if (!jobs || jobs.length === 0) return;
    const copies = jobs.length === 1 ? "1 copy" : `${jobs.length} copies`;
    this.showNotice(`Queued ${copies} of ${file.name}. `, h("a", { href: "/queue" }, "See the queue"));
  }

  async edit(file) {
    const updated = await editFile(file);
    if (!updated) return;
    this.showNotice(`Saved ${updated.name}.`);
    this.loadFolders();
    this.load();
  }

  async remove(file) {
    const sure = await confirmAction({
      title: `Delete ${file.name}?`,
      message: "The file leaves the library for good. While unfinished jobs still need it, the server refuses.",
      confirmLabel: "Delete",
      danger: true,
    });
    if (!sure) return;
    try {
      await api(`/api/v1/library/files/${file.id}`, { method: "DELETE" });
    } catch (err) {
      if (!handleSessionProblem(err)) this.showError(`${file.name} was not deleted: ${err.detail || err.message}`);
      return;
    }
    this.showNotice(`Deleted ${file.name}.`);
    this.loadFolders();
    this.load();
  }
}
