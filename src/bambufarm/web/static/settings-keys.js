// <settings-keys>: API keys for machines (ERP/MES, scripts, Home Assistant) — list, create
// with scopes, revoke. Everyone manages their own keys with the scopes their role can grant
// (a viewer: read only); an admin may also list and revoke everybody's. A new key's token is
// in the create answer only: it is shown once with a copy button and a warning, and leaves
// the DOM when the user presses "Done".

import { api, handleSessionProblem } from "./api.js";
import { confirmAction } from "./confirm-dialog.js";
import { h, replaceChildren, setText } from "./dom.js";
import { problemText } from "./settings-printer-form.js";
import { secretPanel } from "./settings-secret.js";

const SCOPES = [
  ["read", "read", "See printers, jobs, history"],
  ["control", "control", "Pause, resume, stop, temperatures"],
  ["queue", "queue", "Add and manage print jobs"],
  ["admin", "admin", "Everything, including printers and users"],
];
// auth.roles.GRANTABLE: never more than the role itself may do.
const GRANTABLE = {
  viewer: ["read"],
  operator: ["read", "control", "queue"],
  admin: ["read", "control", "queue", "admin"],
};

function when(iso, never = "never") {
  if (!iso) return never;
  const at = new Date(iso);
  return Number.isNaN(at.getTime()) ? never : at.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

export class SettingsKeys extends HTMLElement {
  connectedCallback() {
    if (this.body) return;
    this.role = document.body.dataset.role || "viewer";
    this.admin = this.role === "admin";
    this.everyone = false;
    this.build();
    this.load();
  }

  disconnectedCallback() {
    this.secret?.dispose();
  }

  build() {
    this.error = h("p", { class: "notice notice-error", role: "alert", hidden: true });
    this.status = h("p", { class: "form-status", role: "status", "aria-live": "polite" });
    this.secretSlot = h("div", { class: "secret-slot" });
    this.body = h("tbody");
    this.ownerHead = h("th", { scope: "col", hidden: true }, "Owner");
    this.empty = h("p", { class: "empty", hidden: true }, "No API keys yet.");
    let everyone = null;
    if (this.admin) {
      const box = h("input", { id: "keys-everyone", type: "checkbox" });
      box.addEventListener("change", () => {
        this.everyone = box.checked;
        this.load();
      });
      everyone = h("div", { class: "check" }, box, h("label", { for: "keys-everyone" }, "Show every user's keys"));
    }
    const table = h(
      "table",
      { class: "settings-table keys-table", "aria-labelledby": "keys-title" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "Name"),
          this.ownerHead,
          ["Scopes", "Created", "Last used"].map((label) => h("th", { scope: "col" }, label)),
          h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")),
        ),
      ),
      this.body,
    );
    this.append(
      h("h2", { id: "keys-title" }, "API keys"),
      h(
        "p",
        { class: "hint" },
        "A key lets a program use the API as you (send it as “Authorization: Bearer <key>”), limited to its scopes.",
      ),
      this.error,
      this.status,
      this.secretSlot,
      everyone,
      h("div", { class: "table-scroll" }, table),
      this.empty,
      this.buildCreate(),
    );
  }

  showError(text) {
    this.error.textContent = text;
    this.error.hidden = !text;
  }

  async load() {
    try {
      const list = await api(`/api/v1/api-keys${this.everyone ? "?all=true" : ""}`);
      this.ownerHead.hidden = !this.everyone;
      replaceChildren(this.body, list.items.map((key) => this.row(key)));
      this.empty.hidden = list.items.length > 0;
    } catch (err) {
      if (handleSessionProblem(err)) return;
      this.showError(`The API keys could not be loaded. ${problemText(err)}`);
    }
  }

  row(key) {
    const revoke = h("button", { type: "button", class: "button button-small button-danger", "aria-label": `Revoke ${key.name}` }, "Revoke");
    revoke.addEventListener("click", () => this.revoke(key));
    return h(
      "tr",
      { dataset: { keyId: key.id } },
      h("th", { scope: "row", "data-label": "Name" }, key.name),
      this.everyone ? h("td", { "data-label": "Owner" }, key.owner) : null,
      h("td", { "data-label": "Scopes" }, h("span", { class: "scopes" }, key.scopes.map((s) => h("span", { class: "pill" }, s)))),
      h("td", { "data-label": "Created" }, when(key.created_at)),
      h("td", { "data-label": "Last used" }, when(key.last_used_at)),
      h("td", { class: "row-actions", "data-label": "Actions" }, revoke),
    );
  }

  async revoke(key) {
    const mine = key.owner === document.body.dataset.user;
    const ok = await confirmAction({
      title: `Revoke “${key.name}”?`,
      message: `${mine ? "Programs using this key" : `Programs using ${key.owner}'s key`} are refused from now on. This cannot be undone: a new key would have to be made and handed out.`,
      confirmLabel: "Revoke",
      danger: true,
    });
    if (!ok) return;
    try {
      await api(`/api/v1/api-keys/${encodeURIComponent(key.id)}`, { method: "DELETE" });
      setText(this.status, `“${key.name}” revoked.`);
      this.showError("");
      await this.load();
    } catch (err) {
      if (handleSessionProblem(err)) return;
      this.showError(problemText(err));
    }
  }

  buildCreate() {
    const allowed = GRANTABLE[this.role] || GRANTABLE.viewer;
    const name = h("input", { id: "new-key-name", required: true, maxlength: "64", autocomplete: "off", spellcheck: "false", placeholder: "e.g. erp-sync" });
    const boxes = SCOPES.filter(([value]) => allowed.includes(value)).map(([value, label, hint]) => {
      const box = h("input", { type: "checkbox", id: `scope-${value}`, name: "scope", value, checked: value === "read", "aria-describedby": `scope-${value}-hint` });
      return h("div", { class: "check" }, box, h("label", { for: `scope-${value}` }, label), h("span", { class: "hint", id: `scope-${value}-hint` }, hint));
    });
    const message = h("p", { class: "notice notice-error", role: "alert", hidden: true });
    const submit = h("button", { type: "submit", class: "button button-primary" }, "Create key");
    const form = h(
      "form",
      { class: "key-form", novalidate: true },
      message,
      h("div", { class: "form-grid" }, h("div", { class: "field" }, h("label", { for: "new-key-name" }, "Key name"), name)),
      h("fieldset", { class: "scope-set" }, h("legend", {}, "Scopes"), boxes),
      h("div", { class: "form-actions" }, submit),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const label = name.value.trim();
      const scopes = [...form.querySelectorAll('input[name="scope"]:checked')].map((box) => box.value);
      const problem = !label ? ["Give the key a name that says what uses it.", name] : scopes.length === 0 ? ["Choose at least one scope.", form.querySelector('input[name="scope"]')] : null;
      if (problem) {
        message.textContent = problem[0];
        message.hidden = false;
        problem[1].focus();
        return;
      }
      submit.disabled = true;
      message.hidden = true;
      try {
        const created = await api("/api/v1/api-keys", { method: "POST", body: { name: label, scopes } });
        form.reset();
        setText(this.status, `Key “${created.name}” created.`);
        this.secret?.dispose();
        this.secret = secretPanel({
          title: `Your new key “${created.name}”`,
          warning: "This is the only time the key is shown. Copy it now and keep it somewhere safe; if it is lost, revoke it and create another.",
          label: "API key",
          secret: created.token,
          onDone: () => (this.secret = null),
        });
        this.secretSlot.append(this.secret);
        await this.load();
      } catch (err) {
        if (handleSessionProblem(err)) return;
        message.textContent = problemText(err);
        message.hidden = false;
      } finally {
        submit.disabled = false;
      }
    });
    return h("section", { class: "settings-block", "aria-labelledby": "new-key-title" }, h("h2", { id: "new-key-title" }, "Create a key"), form);
  }
}
