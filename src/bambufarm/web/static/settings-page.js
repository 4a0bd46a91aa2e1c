// <settings-page>: the settings as three tabs — printers, users (an admin's) or one's own
// account, and API keys. The tabs follow the ARIA tabs pattern (arrow keys, Home, End move
// between them; Tab goes into the panel) and the chosen one is kept in the URL's fragment, so
// a reload or a shared link opens the same tab. Each panel is its own component, built the
// first time its tab is shown.

import { h } from "./dom.js";
import { SettingsKeys } from "./settings-keys.js";
import { SettingsPrinters } from "./settings-printers.js";
import { SettingsUsers } from "./settings-users.js";

const TABS = [
  { id: "printers", label: "Printers", tag: "settings-printers" },
  { id: "users", label: "Users", adminLabel: true, tag: "settings-users" },
  { id: "keys", label: "API keys", tag: "settings-keys" },
];

export class SettingsPage extends HTMLElement {
  connectedCallback() {
    if (this.tabs) return;
    const admin = document.body.dataset.role === "admin";
    this.tabs = new Map();
    const list = h("div", { class: "settings-tabs", role: "tablist", "aria-label": "Settings sections" });
    const panels = h("div", { class: "settings-panels" });
    for (const tab of TABS) {
      const label = tab.adminLabel && !admin ? "My account" : tab.label;
      const button = h(
        "button",
        {
          type: "button",
          role: "tab",
          id: `tab-${tab.id}`,
          class: "settings-tab",
          "aria-controls": `panel-${tab.id}`,
          "aria-selected": "false",
          tabindex: "-1",
        },
        label,
      );
      const panel = h("section", {
        id: `panel-${tab.id}`,
        class: "settings-panel",
        role: "tabpanel",
        "aria-labelledby": `tab-${tab.id}`,
        tabindex: "0",
        hidden: true,
      });
      button.addEventListener("click", () => this.select(tab.id, { focus: false }));
      button.addEventListener("keydown", (event) => this.onKey(event, tab.id));
      list.append(button);
      panels.append(panel);
      this.tabs.set(tab.id, { ...tab, button, panel, built: false });
    }
    this.append(h("div", { class: "settings-head" }, h("h1", {}, "Settings")), list, panels);
    this.onHash = () => this.select(this.fromHash(), { focus: false, keepHash: true });
    window.addEventListener("hashchange", this.onHash);
    this.select(this.fromHash(), { focus: false, keepHash: true });
  }

  disconnectedCallback() {
    window.removeEventListener("hashchange", this.onHash);
  }

  fromHash() {
    const wanted = window.location.hash.replace(/^#/, "");
    return this.tabs.has(wanted) ? wanted : "printers";
  }

  select(id, { focus = true, keepHash = false } = {}) {
    for (const [key, tab] of this.tabs) {
      const chosen = key === id;
      tab.button.setAttribute("aria-selected", String(chosen));
      tab.button.tabIndex = chosen ? 0 : -1;
      tab.panel.hidden = !chosen;
      if (chosen && !tab.built) {
        tab.built = true;
        tab.panel.append(document.createElement(tab.tag));
      }
    }
    if (!keepHash && window.location.hash !== `#${id}`) {
      // replaceState: switching tabs is not a page of its own in the history.
      window.history.replaceState(null, "", `#${id}`);
    }
    if (focus) this.tabs.get(id).button.focus();
  }

  onKey(event, id) {
    const ids = [...this.tabs.keys()];
    const at = ids.indexOf(id);
    const moves = {
      ArrowRight: ids[(at + 1) % ids.length],
      ArrowLeft: ids[(at - 1 + ids.length) % ids.length],
      Home: ids[0],
      End: ids[ids.length - 1],
    };
    const next = moves[event.key];
    if (!next) return;
    event.preventDefault();
    this.select(next);
  }
}

for (const [tag, component] of [
  ["settings-printers", SettingsPrinters],
  ["settings-users", SettingsUsers],
  ["settings-keys", SettingsKeys],
]) {
  if (!customElements.get(tag)) customElements.define(tag, component);
}
