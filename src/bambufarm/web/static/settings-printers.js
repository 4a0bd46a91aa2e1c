// <settings-printers>: the farm's printers as a table (name, model, serial, address, enabled
// or in maintenance, connection state kept live over the WebSocket) and, for admins, what
// changes them: printers discovered on the LAN with an "Add" that fills the form, the add
// form (the server tests the connection first), edit, maintenance on and off, and remove.
// Viewers and operators see the table only: printers are an admin's to change.

import { api, goToLogin, handleSessionProblem } from "./api.js";
import { confirmAction } from "./confirm-dialog.js";
import { h, replaceChildren, setText } from "./dom.js";
import { LiveFeed } from "./live.js";
import { applyFrame, fetchAllPrinters, fetchPrinter, liveSubscription, LIVE_PATH, PrinterStore } from "./printer-source.js";
import { editPrinterDialog, printerForm, problemText } from "./settings-printer-form.js";

const CONNECTION_LABELS = {
  online: "Online",
  stale: "Not answering",
  connecting: "Connecting",
  offline: "Offline",
  auth_failed: "Access code refused",
  tls_failed: "Certificate refused",
  disabled: "Maintenance",
};
const PILL_OF = { online: "idle", stale: "paused", connecting: "paused", auth_failed: "error", tls_failed: "error" };

function byName(a, b) {
  return (a.name || a.serial).localeCompare(b.name || b.serial, undefined, { numeric: true, sensitivity: "base" });
}

export class SettingsPrinters extends HTMLElement {
  connectedCallback() {
    if (this.store) return;
    this.admin = document.body.dataset.role === "admin";
    this.store = new PrinterStore();
    this.rows = new Map();
    this.build();
    this.feed = new LiveFeed(LIVE_PATH, () => liveSubscription(null));
    this.feed.addEventListener("message", (event) => this.onFrame(event.detail));
    this.feed.addEventListener("auth", () => goToLogin());
    this.opened = false;
    this.feed.addEventListener("state", (event) => {
      // A reopened socket may have missed changes: load the list again.
      if (event.detail === "open" && this.opened) this.load();
      if (event.detail === "open") this.opened = true;
    });
    this.load().finally(() => this.isConnected && this.feed.start());
    if (this.admin) this.loadDiscovery();
  }

  disconnectedCallback() {
    this.feed?.stop();
  }

  build() {
    this.error = h("p", { class: "notice notice-error", role: "alert", hidden: true });
    this.status = h("p", { class: "form-status", role: "status", "aria-live": "polite" });
    this.body = h("tbody");
    this.empty = h("p", { class: "empty", hidden: true }, this.admin ? "No printers yet: add one below." : "No printers yet.");
    const table = h(
      "table",
      { class: "settings-table printers-table", "aria-labelledby": "printers-title" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["Name", "Model", "Serial", "Address", "State"].map((label) => h("th", { scope: "col" }, label)),
          this.admin ? h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")) : null,
        ),
      ),
      this.body,
    );
    this.append(
      h("h2", { id: "printers-title" }, "Printers"),
      this.error,
      this.status,
      h("div", { class: "table-scroll" }, table),
      this.empty,
    );
    if (this.admin) {
      this.append(this.buildDiscovery(), this.buildAddForm());
    } else {
      this.append(h("p", { class: "hint read-only-note" }, "Only an admin can add, change or remove printers."));
    }
  }

  showError(text) {
    this.error.textContent = text;
    this.error.hidden = !text;
  }

  async load() {
    try {
      const printers = await fetchAllPrinters();
      const seen = new Set();
      for (const info of printers) {
        seen.add(info.serial);
        this.upsert(info);
      }
      for (const serial of [...this.rows.keys()]) if (!seen.has(serial)) this.drop(serial);
      this.empty.hidden = this.rows.size > 0;
      this.showError("");
    } catch (err) {
      if (handleSessionProblem(err)) return;
      this.showError(`The printers could not be loaded. ${problemText(err)}`);
    }
  }

  onFrame(frame) {
    applyFrame(this.store, frame, {
      changed: (view) => this.paintState(view.serial),
      unknown: (serial) => this.fetchOne(serial),
      removed: (serial) => this.drop(serial),
    });
  }

  async fetchOne(serial) {
    try {
      this.upsert(await fetchPrinter(serial));
    } catch (err) {
      if (handleSessionProblem(err)) return;
      // Removed again before we asked: the "removed" event takes it off.
    }
  }

  /** Add or refresh the row of the API's printer `info`. */
  upsert(info) {
    const entry = this.store.entries.get(info.serial);
    // The REST answer's connection is as fresh as any live part; drop the stale one.
    if (entry?.status) entry.status = { ...entry.status, connection: info.connection };
    this.store.setInfo(info);
    let row = this.rows.get(info.serial);
    if (!row) {
      row = this.buildRow(info.serial);
      this.rows.set(info.serial, row);
      this.placeRow(row, info);
    }
    this.paintRow(info.serial);
  }

  placeRow(row, info) {
    const after = [...this.rows.entries()]
      .filter(([serial]) => serial !== info.serial)
      .map(([serial, other]) => ({ info: this.store.entries.get(serial).info, row: other.tr }))
      .sort((a, b) => byName(a.info, b.info))
      .find((other) => byName(info, other.info) < 0);
    this.body.insertBefore(row.tr, after ? after.row : null);
    this.empty.hidden = true;
  }

  drop(serial) {
    const row = this.rows.get(serial);
    if (!row) return;
    row.tr.remove();
    this.rows.delete(serial);
    this.store.remove(serial);
    this.empty.hidden = this.rows.size > 0;
  }

  buildRow(serial) {
    const cell = (label, className) => h("td", { "data-label": label, class: className });
    const row = {
      name: h("a", { href: `/printers/${encodeURIComponent(serial)}` }),
      model: cell("Model"),
      serial: cell("Serial", "mono"),
      host: cell("Address", "mono"),
      pill: h("span", { class: "pill conn-state" }),
      reason: h("span", { class: "conn-reason" }),
    };
    row.state = h("td", { "data-label": "State" }, row.pill, row.reason);
    row.tr = h(
      "tr",
      { dataset: { serial } },
      h("th", { scope: "row", "data-label": "Name" }, row.name),
      row.model,
      row.serial,
      row.host,
      row.state,
    );
    if (this.admin) {
      row.edit = h("button", { type: "button", class: "button button-small" }, "Edit");
      row.toggle = h("button", { type: "button", class: "button button-small" });
      row.remove = h("button", { type: "button", class: "button button-small button-danger" }, "Remove");
      row.edit.addEventListener("click", () => this.edit(serial));
      row.toggle.addEventListener("click", () => this.toggle(serial));
      row.remove.addEventListener("click", () => this.remove(serial));
      row.tr.append(h("td", { class: "row-actions", "data-label": "Actions" }, row.edit, row.toggle, row.remove));
    }
    return row;
  }

  paintRow(serial) {
    const row = this.rows.get(serial);
    const info = this.store.entries.get(serial)?.info;
    if (!row || !info) return;
    const name = info.name || info.serial;
    setText(row.name, name);
    setText(row.model, info.model_name || info.model);
    setText(row.serial, info.serial);
    setText(row.host, info.host);
    if (this.admin) {
      setText(row.toggle, info.enabled ? "Disable" : "Enable");
      row.toggle.setAttribute("aria-label", `${info.enabled ? "Disable (maintenance)" : "Enable"} ${name}`);
      row.edit.setAttribute("aria-label", `Edit ${name}`);
      row.remove.setAttribute("aria-label", `Remove ${name}`);
    }
    this.paintState(serial);
  }

  paintState(serial) {
    const row = this.rows.get(serial);
    const view = this.store.view(serial);
    if (!row || !view) return;
    const state = view.enabled ? view.connection.state : "disabled";
    setText(row.pill, CONNECTION_LABELS[state] || state);
    row.pill.className = `pill conn-state pill-${PILL_OF[state] || "offline"}`;
    row.tr.dataset.state = state;
    setText(row.reason, state === "online" || state === "disabled" ? "" : view.connection.reason);
  }

  // ------------------------------------------------------------------ admin actions

  async edit(serial) {
    const info = this.store.entries.get(serial)?.info;
    if (!info) return;
    const updated = await editPrinterDialog(info);
    if (updated) {
      this.upsert(updated.serial ? updated : info);
      setText(this.status, `${updated.name || serial} saved.`);
    }
  }

  async toggle(serial) {
    const info = this.store.entries.get(serial)?.info;
    if (!info) return;
    const name = info.name || serial;
    if (info.enabled) {
      const ok = await confirmAction({
        title: `Put ${name} in maintenance?`,
        message: "Its link is closed and no job is sent to it until it is enabled again. A print already running goes on on the printer.",
        confirmLabel: "Disable",
      });
      if (!ok) return;
    }
    const action = info.enabled ? "disable" : "enable";
    try {
      this.upsert(await api(`/api/v1/printers/${encodeURIComponent(serial)}/${action}`, { method: "POST" }));
      setText(this.status, info.enabled ? `${name} is in maintenance.` : `${name} is enabled.`);
      this.showError("");
    } catch (err) {
      if (handleSessionProblem(err)) return;
      this.showError(`${name} could not be ${action}d. ${problemText(err)}`);
    }
  }

  async remove(serial) {
    const info = this.store.entries.get(serial)?.info;
    if (!info) return;
    const name = info.name || serial;
    const ok = await confirmAction({
      title: `Remove ${name}?`,
      message: "Its link is closed and it leaves the farm; its print history stays. Adding it again needs its access code.",
      confirmLabel: "Remove",
      danger: true,
    });
    if (!ok) return;
    try {
      await api(`/api/v1/printers/${encodeURIComponent(serial)}`, { method: "DELETE" });
      this.drop(serial);
      setText(this.status, `${name} removed.`);
      this.showError("");
      this.loadDiscovery();
    } catch (err) {
      if (handleSessionProblem(err)) return;
      this.showError(`${name} could not be removed. ${problemText(err)}`);
    }
  }

  // ------------------------------------------------------------------ discovery

  buildDiscovery() {
    this.discoveryNote = h("p", { class: "hint", role: "status", "aria-live": "polite" });
    this.discoveryList = h("ul", { class: "discovered", "aria-labelledby": "discovered-title" });
    const refresh = h("button", { type: "button", class: "button button-small" }, "Refresh");
    refresh.addEventListener("click", () => this.loadDiscovery());
    return h(
      "section",
      { class: "settings-block", "aria-labelledby": "discovered-title" },
      h("div", { class: "block-head" }, h("h2", { id: "discovered-title" }, "Discovered on the network"), refresh),
      this.discoveryNote,
      this.discoveryList,
    );
  }

  async loadDiscovery() {
    if (!this.admin) return;
    let found;
    try {
      found = await api("/api/v1/discovery");
    } catch (err) {
      if (handleSessionProblem(err)) return;
      setText(this.discoveryNote, `The discovered printers could not be loaded. ${problemText(err)}`);
      return;
    }
    const items = found.items || [];
    if (!found.listening) {
      setText(this.discoveryNote, `The server is not listening for printers${found.error ? `: ${found.error}` : ""}. Add them by address below.`);
    } else if (items.length === 0) {
      setText(this.discoveryNote, "No printer announcing itself that is not in the farm yet. Printers announce every few seconds; refresh in a moment.");
    } else {
      setText(this.discoveryNote, `${items.length} printer${items.length === 1 ? "" : "s"} not in the farm yet.`);
    }
    replaceChildren(
      this.discoveryList,
      items.map((item) => {
        const add = h("button", { type: "button", class: "button button-small", "aria-label": `Add ${item.name || item.serial}` }, "Add");
        add.addEventListener("click", () => this.prefill(item));
        return h(
          "li",
          { dataset: { serial: item.serial } },
          h("span", { class: "discovered-name" }, item.name || item.serial),
          h("span", { class: "hint" }, `${item.model_name || item.model} · ${item.serial} · ${item.host}${item.firmware ? ` · firmware ${item.firmware}` : ""}`),
          add,
        );
      }),
    );
  }

  prefill(item) {
    this.adder.reset();
    this.adder.fill({ name: item.name, host: item.host, serial: item.serial, model: item.model_name || "" });
    this.addMessage.hidden = true;
    setText(this.addStatus, `Filled in from ${item.name || item.serial}: enter its access code.`);
    this.adder.form.scrollIntoView({ block: "nearest" });
    this.adder.focus("access_code");
  }

  // ------------------------------------------------------------------ add

  buildAddForm() {
    this.adder = printerForm({ mode: "add", submitLabel: "Test and add" });
    this.addMessage = h("p", { class: "notice notice-error", role: "alert", hidden: true });
    this.addStatus = h("p", { class: "form-status", role: "status", "aria-live": "polite" });
    this.adder.form.prepend(this.addMessage);
    this.adder.form.append(this.addStatus);
    this.adder.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.add();
    });
    return h(
      "section",
      { class: "settings-block", "aria-labelledby": "add-printer-title" },
      h("h2", { id: "add-printer-title" }, "Add a printer"),
      h("p", { class: "hint" }, "The server connects to the printer with these details before it saves anything. The printer needs LAN mode or Developer Mode and its access code."),
      this.adder.form,
    );
  }

  async add() {
    const request = this.adder.body();
    if (request.problem) {
      this.addMessage.textContent = request.problem;
      this.addMessage.hidden = false;
      request.focus.focus();
      return;
    }
    this.adder.setBusy(true);
    this.addMessage.hidden = true;
    setText(this.addStatus, request.test ? `Testing the connection to ${request.body.host}…` : "Saving…");
    try {
      const query = request.test ? "" : "?test=false";
      const added = await api(`/api/v1/printers${query}`, { method: "POST", body: request.body });
      this.adder.reset();
      this.upsert(added);
      setText(this.addStatus, `${added.name || added.serial} added${request.test ? ": the connection test passed" : ""}.`);
      this.loadDiscovery();
    } catch (err) {
      this.adder.wipe();
      if (handleSessionProblem(err)) return;
      setText(this.addStatus, "");
      this.addMessage.textContent = `Not added. ${problemText(err)}`;
      this.addMessage.hidden = false;
      this.adder.focus("access_code");
    } finally {
      this.adder.setBusy(false);
    }
  }
}
