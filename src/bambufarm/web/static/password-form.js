// <password-form username="admin" forced>: change one's password. `forced` is the first-run
// screen of an account with a generated password: nothing else opens until it is changed.
// The server ends every session of the user on a change, so the form signs in again with
// the new password and goes on to the fleet.

import { api, ApiProblem } from "./api.js";
import { h } from "./dom.js";

// The server's policy (auth.passwords.MIN_PASSWORD_LENGTH); it checks again and has the last word.
const MIN_LENGTH = 10;

export class PasswordForm extends HTMLElement {
  connectedCallback() {
    if (this.form) return;
    const forced = this.hasAttribute("forced");
    this.message = h("div", { class: "notice notice-error", role: "alert", hidden: true });
    const field = (id, label, attributes, hint) =>
      h(
        "div",
        { class: "field" },
        h("label", { for: id }, label),
        h("input", { id, type: "password", required: true, ...attributes, "aria-describedby": hint ? `${id}-hint` : null }),
        hint ? h("span", { class: "hint", id: `${id}-hint` }, hint) : null,
      );
    this.submit = h("button", { type: "submit", class: "button button-primary" }, "Change password");
    this.form = h(
      "form",
      { novalidate: true },
      this.message,
      // Lets password managers tie the new password to the account.
      h("input", { type: "text", name: "username", autocomplete: "username", value: this.getAttribute("username") || "", hidden: true, readonly: true }),
      field("current-password", forced ? "Generated password" : "Current password", { autocomplete: "current-password" },
        forced ? "The password printed when the server first started." : null),
      field("new-password", "New password", { autocomplete: "new-password", minlength: String(MIN_LENGTH) },
        `At least ${MIN_LENGTH} characters.`),
      field("confirm-password", "New password again", { autocomplete: "new-password" }),
      this.submit,
    );
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.change();
    });
    this.append(
      h(
        "section",
        { class: "auth-panel", "aria-labelledby": "password-title" },
        h("h1", { id: "password-title" }, forced ? "Choose your password" : "Change password"),
        h(
          "p",
          { class: "lead" },
          forced
            ? "This account still has the password generated at first start. Choose your own before you continue."
            : "Every signed-in session of yours ends when the password changes.",
        ),
        this.form,
      ),
    );
    this.querySelector("#current-password").focus();
  }

  showMessage(text) {
    this.message.textContent = text;
    this.message.hidden = !text;
  }

  async change() {
    const current = this.querySelector("#current-password");
    const fresh = this.querySelector("#new-password");
    const again = this.querySelector("#confirm-password");
    const problem = localProblem(current.value, fresh.value, again.value);
    if (problem) {
      this.showMessage(problem.text);
      this.querySelector(`#${problem.field}`).focus();
      return;
    }
    this.submit.disabled = true;
    this.showMessage("");
    const username = this.getAttribute("username") || "";
    try {
      await api("/api/v1/auth/password", {
        method: "POST",
        body: { current_password: current.value, new_password: fresh.value },
      });
    } catch (err) {
      this.showMessage(changeMessage(err));
      this.submit.disabled = false;
      (err instanceof ApiProblem && err.slug === "weak-password" ? fresh : current).focus();
      return;
    }
    try {
      await api("/api/v1/auth/login", { method: "POST", body: { username, password: fresh.value } });
      window.location.assign("/");
    } catch {
      // The password did change; only the new session failed.
      window.location.assign("/login");
    }
  }
}

function localProblem(current, fresh, again) {
  if (!current) return { field: "current-password", text: "Enter your current password." };
  if (fresh.length < MIN_LENGTH) return { field: "new-password", text: `The new password needs at least ${MIN_LENGTH} characters.` };
  if (fresh !== again) return { field: "confirm-password", text: "The two new passwords differ." };
  if (fresh === current) return { field: "new-password", text: "Choose a password different from the current one." };
  return null;
}

function changeMessage(err) {
  if (!(err instanceof ApiProblem)) return "Changing the password failed; try again.";
  if (err.slug === "wrong-password") return "The current password is wrong.";
  if (err.status === 429) return "Too many wrong passwords; wait a few minutes and try again.";
  if (err.status === 401) return "Your session has ended; sign in again.";
  return err.detail || err.message;
}
