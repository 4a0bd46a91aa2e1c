// <settings-users>: for an admin, the farm's accounts — list, create (with a password given
// or generated and shown once), change role, reset a password (the new one shown once),
// disable and enable again (accounts are disabled, never deleted, so the audit log keeps
// naming real people). Anyone else sees their own account and the way to change its
// password. The server keeps an enabled admin: its refusals are shown as it words them.

import { api, handleSessionProblem } from "./api.js";
import { confirmAction } from "./confirm-dialog.js";
import { h, replaceChildren, setText } from "./dom.js";
import { problemText } from "./settings-printer-form.js";
import { secretPanel } from "./settings-secret.js";

const ROLES = [
  ["viewer", "Viewer"],
  ["operator", "Operator"],
  ["admin", "Admin"],
];
const ROLE_HINT = "Viewers see everything and change nothing; operators also run printers and the queue; admins also manage printers, users and settings.";
// The server's policy (auth.passwords.MIN_PASSWORD_LENGTH); it checks again.
const MIN_PASSWORD = 10;
const MAX_USERS = 1000;

function when(iso) {
  if (!iso) return "—";
  const at = new Date(iso);
  return Number.isNaN(at.getTime()) ? "—" : at.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

export class SettingsUsers extends HTMLElement {
  connectedCallback() {
    if (this.built) return;
    this.built = true;
    this.me = document.body.dataset.user || "";
    this.role = document.body.dataset.role || "viewer";
    if (this.role === "admin") this.buildAdmin();
    else this.buildOwn();
  }

  disconnectedCallback() {
    this.secret?.dispose();
  }

  buildOwn() {
    this.append(
      h("h2", {}, "My account"),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "User name"),
        h("dd", {}, this.me),
        h("dt", {}, "Role"),
        h("dd", {}, this.role),
      ),
      h("p", {}, h("a", { href: "/password" }, "Change my password")),
      h("p", { class: "hint read-only-note" }, "Accounts and roles are managed by an admin."),
    );
  }

  buildAdmin() {
    this.error = h("p", { class: "notice notice-error", role: "alert", hidden: true });
    this.status = h("p", { class: "form-status", role: "status", "aria-live": "polite" });
    this.secretSlot = h("div", { class: "secret-slot" });
    this.body = h("tbody");
    const table = h(
      "table",
      { class: "settings-table users-table", "aria-labelledby": "users-title" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["User", "Role", "Status", "Created"].map((label) => h("th", { scope: "col" }, label)),
          h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")),
        ),
      ),
      this.body,
    );
    this.append(
      h("h2", { id: "users-title" }, "Users and roles"),
      h("p", {}, h("a", { href: "/password" }, "Change my password")),
      this.error,
      this.status,
      this.secretSlot,
      h("div", { class: "table-scroll" }, table),
      this.buildCreate(),
    );
    this.load();
  }

  showError(text) {
    this.error.textContent = text;
    this.error.hidden = !text;
  }

  showSecret(options) {
    this.secret?.dispose();
    this.secret = secretPanel({ ...options, onDone: () => (this.secret = null) });
    this.secretSlot.append(this.secret);
  }

  async load() {
    try {
      const page = await api(`/api/v1/users?limit=${MAX_USERS}`);
      replaceChildren(this.body, page.items.map((user) => this.row(user)));
      this.showError(page.total > page.items.length ? `Showing the first ${page.items.length} of ${page.total} users.` : "");
    } catch (err) {
      if (handleSessionProblem(err)) return;
      this.showError(`The users could not be loaded. ${problemText(err)}`);
    }
  }

  row(user) {
    const self = user.username === this.me;
    const id = `role-${user.id}`;
    const status = user.disabled ? "Disabled" : user.must_change_password ? "Must change password" : "Active";
    let roleCell;
    if (self) {
      roleCell = h("td", { "data-label": "Role" }, user.role, h("span", { class: "hint" }, " (you)"));
    } else {
      const select = h(
        "select",
        { id, "aria-label": `Role of ${user.username}` },
        ROLES.map(([value]) => h("option", { value, selected: value === user.role }, value)),
      );
      select.addEventListener("change", () => this.changeRole(user, select));
      roleCell = h("td", { "data-label": "Role" }, select);
    }
    const actions = h("td", { class: "row-actions", "data-label": "Actions" });
    if (!self) {
      const reset = h("button", { type: "button", class: "button button-small", "aria-label": `Reset the password of ${user.username}` }, "Reset password");
      reset.addEventListener("click", () => this.resetPassword(user));
      const toggle = h(
        "button",
        { type: "button", class: user.disabled ? "button button-small" : "button button-small button-danger", "aria-label": `${user.disabled ? "Enable" : "Disable"} ${user.username}` },
        user.disabled ? "Enable" : "Disable",
      );
      toggle.addEventListener("click", () => this.setDisabled(user, !user.disabled));
      actions.append(reset, toggle);
    }
    return h(
      "tr",
      { dataset: { username: user.username } },
      h("th", { scope: "row", "data-label": "User" }, user.username),
      roleCell,
      h("td", { "data-label": "Status" }, status),
      h("td", { "data-label": "Created" }, when(user.created_at)),
      actions,
    );
  }

  async changeRole(user, select) {
    const role = select.value;
    if (user.role === "admin" && role !== "admin") {
      const ok = await confirmAction({
        title: `Take admin rights from ${user.username}?`,
        message: `${user.username} will no longer manage printers, users or settings.`,
        confirmLabel: `Make ${role}`,
        danger: true,
      });
      if (!ok) {
        select.value = user.role;
        return;
      }
    }
    await this.patch(user, { role }, `${user.username} is now ${role === "viewer" ? "a" : "an"} ${role}.`, () => (select.value = user.role));
  }

  async setDisabled(user, disabled) {
    if (disabled) {
      const ok = await confirmAction({
        title: `Disable ${user.username}?`,
        message: "Their sessions end and their API keys stop working until an admin enables the account again.",
        confirmLabel: "Disable",
        danger: true,
      });
      if (!ok) return;
    }
    await this.patch(user, { disabled }, `${user.username} is ${disabled ? "disabled" : "enabled"}.`);
  }

  async patch(user, body, done, undo = () => {}) {
    try {
      await api(`/api/v1/users/${encodeURIComponent(user.username)}`, { method: "PATCH", body });
      setText(this.status, done);
      this.showError("");
    } catch (err) {
      if (handleSessionProblem(err)) return;
      undo();
      this.showError(problemText(err));
      return;
    }
    await this.load();
  }

  async resetPassword(user) {
    const ok = await confirmAction({
      title: `Reset the password of ${user.username}?`,
      message: "Their current password stops working and their sessions end. You get a new password to hand over; they choose their own at the next sign-in.",
      confirmLabel: "Reset password",
      danger: true,
    });
    if (!ok) return;
    try {
      const answer = await api(`/api/v1/users/${encodeURIComponent(user.username)}/reset-password`, { method: "POST" });
      this.showError("");
      setText(this.status, `The password of ${user.username} was reset.`);
      this.showSecret({
        title: `New password for ${answer.username}`,
        warning: "Shown this once: hand it over now. They must change it when they sign in.",
        label: "Password",
        secret: answer.password,
      });
      await this.load();
    } catch (err) {
      if (handleSessionProblem(err)) return;
      this.showError(problemText(err));
    }
  }

  buildCreate() {
    const username = h("input", { id: "new-user-name", required: true, maxlength: "64", autocomplete: "off", spellcheck: "false" });
    const role = h(
      "select",
      { id: "new-user-role", "aria-describedby": "new-user-role-hint" },
      ROLES.map(([value, label]) => h("option", { value }, label)),
    );
    const password = h("input", {
      id: "new-user-password",
      type: "password",
      autocomplete: "new-password",
      "aria-describedby": "new-user-password-hint",
    });
    const message = h("p", { class: "notice notice-error", role: "alert", hidden: true });
    const submit = h("button", { type: "submit", class: "button button-primary" }, "Create user");
    const form = h(
      "form",
      { class: "user-form", novalidate: true },
      message,
      h(
        "div",
        { class: "form-grid" },
        h("div", { class: "field" }, h("label", { for: "new-user-name" }, "User name"), username),
        h("div", { class: "field" }, h("label", { for: "new-user-role" }, "Role"), role, h("span", { class: "hint", id: "new-user-role-hint" }, ROLE_HINT)),
        h(
          "div",
          { class: "field" },
          h("label", { for: "new-user-password" }, "Initial password"),
          password,
          h("span", { class: "hint", id: "new-user-password-hint" }, `Optional, at least ${MIN_PASSWORD} characters. Leave blank to have one generated and shown once.`),
        ),
      ),
      h("div", { class: "form-actions" }, submit),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const name = username.value.trim();
      const given = password.value;
      const problem = !name
        ? ["Give a user name.", username]
        : given && given.length < MIN_PASSWORD
          ? [`A password needs at least ${MIN_PASSWORD} characters.`, password]
          : null;
      if (problem) {
        message.textContent = problem[0];
        message.hidden = false;
        problem[1].focus();
        return;
      }
      submit.disabled = true;
      message.hidden = true;
      const body = { username: name, role: role.value };
      if (given) body.password = given;
      password.value = "";
      try {
        const created = await api("/api/v1/users", { method: "POST", body });
        form.reset();
        setText(this.status, `${created.username} created as ${created.role}; they choose their own password at the first sign-in.`);
        if (created.initial_password) {
          this.showSecret({
            title: `Password for ${created.username}`,
            warning: "Shown this once: hand it over now. They must change it when they sign in.",
            label: "Generated password",
            secret: created.initial_password,
          });
        }
        await this.load();
      } catch (err) {
        if (handleSessionProblem(err)) return;
        message.textContent = problemText(err);
        message.hidden = false;
        username.focus();
      } finally {
        delete body.password;
        submit.disabled = false;
      }
    });
    return h("section", { class: "settings-block", "aria-labelledby": "new-user-title" }, h("h2", { id: "new-user-title" }, "Add a user"), form);
  }
}
