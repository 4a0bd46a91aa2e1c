// <printer-files serial="...">: the files on the printer's storage over FTPS — browse
// directories, download a file (a plain link: the session cookie goes along), delete one
// (operators and admins, after a confirmation). Listing reaches the printer, so it is loaded
// when asked for and on demand, not on every live update.

import { api, handleSessionProblem } from "./api.js";
import { confirmAction } from "./confirm-dialog.js";
import { h, replaceChildren, setText } from "./dom.js";

/** "1.2 MB", "830 KB", "12 B"; "" when unknown. */
export function fileSize(bytes) {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return "";
  if (bytes < 1000) return `${bytes} B`;
  if (bytes < 1_000_000) return `${Math.round(bytes / 1000)} KB`;
  return `${(bytes / 1_000_000).toFixed(1)} MB`;
}

export class PrinterFiles extends HTMLElement {
  connectedCallback() {
    if (this.list) return;
    this.serial = this.getAttribute("serial") || "";
    const role = document.body.dataset.role;
    this.canDelete = role === "operator" || role === "admin";
    this.path = "/";
    this.where = h("p", { class: "files-path" });
    this.up = h("button", { type: "button", class: "button button-small" }, "Up one folder");
    this.up.addEventListener("click", () => this.open(this.path.replace(/\/[^/]*\/?$/, "") || "/"));
    this.refresh = h("button", { type: "button", class: "button button-small" }, "Refresh");
    this.refresh.addEventListener("click", () => this.open(this.path));
    this.status = h("p", { class: "card-model", role: "status", "aria-live": "polite" });
    this.error = h("p", { class: "notice notice-error", role: "alert", hidden: true });
    this.list = h("div", { class: "files-list" });
    replaceChildren(this, h("div", { class: "row files-bar" }, this.where, this.up, this.refresh), this.error, this.status, this.list);
    this.open("/");
  }

  filesPath(suffix = "") {
    return `/api/v1/printers/${encodeURIComponent(this.serial)}/files${suffix}`;
  }

  async open(path) {
    this.path = path;
    setText(this.where, `Folder ${path}`);
    this.up.hidden = path === "/";
    setText(this.status, "Loading the printer's files…");
    this.error.hidden = true;
    try {
      const body = await api(`${this.filesPath()}?path=${encodeURIComponent(path)}`);
      if (path !== this.path) return;
      this.show(body.items);
      setText(this.status, body.items.length ? `${body.items.length} entries` : "This folder is empty.");
    } catch (err) {
      if (handleSessionProblem(err)) return;
      setText(this.status, "");
      replaceChildren(this.list);
      this.showError(`The files could not be listed: ${err.message}`);
    }
  }

  showError(text) {
    this.error.textContent = text;
    this.error.hidden = false;
  }

  show(items) {
    if (!items.length) {
      replaceChildren(this.list);
      return;
    }
    const rows = items.map((item) => {
      const name = item.is_dir
        ? h("button", { type: "button", class: "link-button", "data-dir": item.path }, `${item.name}/`)
        : h("span", {}, item.name);
      if (item.is_dir) name.addEventListener("click", () => this.open(item.path));
      const actions = [];
      if (!item.is_dir) {
        actions.push(
          h(
            "a",
            { class: "button button-small", href: `${this.filesPath("/download")}?path=${encodeURIComponent(item.path)}`, download: item.name, "aria-label": `Download ${item.name}` },
            "Download",
          ),
        );
        if (this.canDelete) {
          const remove = h("button", { type: "button", class: "button button-small button-danger", "aria-label": `Delete ${item.name}` }, "Delete");
          remove.addEventListener("click", () => this.remove(item));
          actions.push(remove);
        }
      }
      return h(
        "tr",
        { "data-path": item.path },
        h("td", { class: "file-name" }, name),
        h("td", {}, item.is_dir ? "Folder" : fileSize(item.size)),
        h("td", {}, item.modified ? new Date(item.modified).toLocaleString([], { dateStyle: "short", timeStyle: "short" }) : "—"),
        h("td", { class: "file-actions" }, actions),
      );
    });
    replaceChildren(
      this.list,
      h(
        "table",
        { class: "files-table" },
        h("thead", {}, h("tr", {}, ["Name", "Size", "Modified", "Actions"].map((label) => h("th", { scope: "col" }, label)))),
        h("tbody", {}, rows),
      ),
    );
  }

  async remove(item) {
    const sure = await confirmAction({
      title: `Delete ${item.name}?`,
      message: `This deletes ${item.path} from the printer's storage. It cannot be undone.`,
      confirmLabel: "Delete file",
      danger: true,
    });
    if (!sure) return;
    try {
      await api(`${this.filesPath()}?path=${encodeURIComponent(item.path)}`, { method: "DELETE" });
      await this.open(this.path);
      setText(this.status, `${item.name} deleted.`);
    } catch (err) {
      if (!handleSessionProblem(err)) this.showError(`${item.name} was not deleted: ${err.message}`);
    }
  }
}

if (!customElements.get("printer-files")) customElements.define("printer-files", PrinterFiles);
