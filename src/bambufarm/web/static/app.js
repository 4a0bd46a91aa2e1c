// The UI's entry module: defines the components and wires the top bar (theme, sign out).
// Each page's shell holds one component; the browser upgrades it once it is defined.

import { api } from "./api.js";
import { FleetDashboard } from "./fleet-dashboard.js";
import { HistoryPage } from "./history-page.js";
import { LibraryPage } from "./library-page.js";
import { LoginForm } from "./login-form.js";
import { PasswordForm } from "./password-form.js";
import { PrinterCard } from "./printer-card.js";
import { PrinterDetail } from "./printer-detail.js";
import { QueuePage } from "./queue-page.js";
import { SettingsPage } from "./settings-page.js";

const THEME_KEY = "bf-theme";

customElements.define("printer-card", PrinterCard);
customElements.define("fleet-dashboard", FleetDashboard);
customElements.define("printer-detail", PrinterDetail);
customElements.define("login-form", LoginForm);
customElements.define("password-form", PasswordForm);
customElements.define("queue-page", QueuePage);
customElements.define("library-page", LibraryPage);
customElements.define("history-page", HistoryPage);
customElements.define("settings-page", SettingsPage);

function currentTheme() {
  const chosen = document.documentElement.dataset.theme;
  if (chosen === "light" || chosen === "dark") return chosen;
  return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

function setupThemeToggle() {
  const button = document.getElementById("theme-toggle");
  if (!button) return;
  const label = button.querySelector(".visually-hidden");
  const show = () => {
    const dark = currentTheme() === "dark";
    button.setAttribute("aria-pressed", String(dark));
    button.title = dark ? "Switch to the light theme" : "Switch to the dark theme";
    if (label) label.textContent = "Dark theme";
  };
  button.addEventListener("click", () => {
    const next = currentTheme() === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    try {
      window.localStorage.setItem(THEME_KEY, next);
    } catch {
      // Storage switched off: the theme holds for this page only.
    }
    show();
  });
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", show);
  show();
}

function setupSignOut() {
  const button = document.getElementById("sign-out");
  if (!button) return;
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await api("/api/v1/auth/logout", { method: "POST" });
    } catch {
      // The session is gone either way once the page leaves; the login page starts afresh.
    }
    window.location.assign("/login");
  });
}

setupThemeToggle();
setupSignOut();
