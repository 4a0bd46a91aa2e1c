// <login-form next="/path">: the sign-in form. Wrong credentials and rate limiting are told
// apart; on success the browser goes on to `next`, or to the password page when the account
// still has its generated password.

import { api, ApiProblem } from "./api.js";
import { h } from "./dom.js";

export class LoginForm extends HTMLElement {
  connectedCallback() {
    if (this.form) return;
    this.message = h("div", { class: "notice notice-error", role: "alert", hidden: true });
    this.username = h("input", {
      id: "login-username",
      name: "username",
      autocomplete: "username",
      autocapitalize: "none",
      spellcheck: "false",
      required: true,
      maxlength: "64",
    });
    this.password = h("input", {
      id: "login-password",
      name: "password",
      type: "password",
      autocomplete: "current-password",
      required: true,
    });
    this.submit = h("button", { type: "submit", class: "button button-primary" }, "Sign in");
    this.form = h(
      "form",
      { novalidate: true, "aria-describedby": "login-lead" },
      this.message,
      h("div", { class: "field" }, h("label", { for: "login-username" }, "Username"), this.username),
      h("div", { class: "field" }, h("label", { for: "login-password" }, "Password"), this.password),
      this.submit,
    );
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.signIn();
    });
    this.append(
      h(
        "section",
        { class: "auth-panel", "aria-labelledby": "login-title" },
        h("h1", { id: "login-title" }, "Sign in"),
        h("p", { class: "lead", id: "login-lead" }, "Sign in to watch and run the print farm."),
        this.form,
      ),
    );
    this.username.focus();
  }

  showMessage(text) {
    this.message.textContent = text;
    this.message.hidden = !text;
  }

  async signIn() {
    const username = this.username.value.trim();
    const password = this.password.value;
    if (!username || !password) {
      this.showMessage("Enter your username and password.");
      (username ? this.password : this.username).focus();
      return;
    }
    this.submit.disabled = true;
    this.submit.textContent = "Signing in…";
    this.showMessage("");
    try {
      const me = await api("/api/v1/auth/login", { method: "POST", body: { username, password } });
      const next = this.getAttribute("next") || "/";
      window.location.assign(me.must_change_password ? "/password" : next);
      return;
    } catch (err) {
      this.showMessage(loginMessage(err));
      this.password.value = "";
      this.password.focus();
    }
    this.submit.disabled = false;
    this.submit.textContent = "Sign in";
  }
}

function loginMessage(err) {
  if (!(err instanceof ApiProblem)) return "Signing in failed; try again.";
  if (err.status === 401) return "Wrong username or password.";
  if (err.status === 429) {
    const wait = err.retryAfter ? ` Try again in ${waitText(err.retryAfter)}.` : " Try again later.";
    return `Too many failed attempts for this account from here.${wait}`;
  }
  if (err.status === 422) return "Enter a valid username and password.";
  return err.detail || err.message;
}

function waitText(seconds) {
  if (seconds < 90) return `${Math.max(1, Math.round(seconds))} seconds`;
  return `${Math.ceil(seconds / 60)} minutes`;
}
