// A secret shown once (an API key's token, a generated or reset password): a read-only field
// with a copy button, a warning that it will not be shown again, and "Done", which takes it
// out of the DOM. Nothing here logs the secret; it lives in the field's value and nowhere else.

import { h } from "./dom.js";

let counter = 0;

/**
 * A panel showing `secret` with `title` and `warning`; `onDone()` runs after it removed itself.
 * The returned element has `dispose()`, which wipes and removes it (e.g. when its list reloads).
 */
export function secretPanel({ title, warning, secret, label, onDone = () => {} }) {
  counter += 1;
  const id = `secret-${counter}`;
  const field = h("input", {
    id,
    class: "secret-value",
    type: "text",
    readonly: true,
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": `${id}-warning`,
  });
  field.value = secret;
  const status = h("span", { class: "secret-status", role: "status", "aria-live": "polite" });
  const copy = h("button", { type: "button", class: "button" }, "Copy");
  const done = h("button", { type: "button", class: "button button-primary" }, "Done");
  const panel = h(
    "section",
    { class: "secret-panel", "aria-labelledby": `${id}-title` },
    h("h3", { id: `${id}-title` }, title),
    h("p", { class: "notice notice-warn", id: `${id}-warning` }, warning),
    h("label", { for: id, class: "field-label" }, label),
    h("div", { class: "secret-row" }, field, copy, done),
    status,
  );
  const dispose = () => {
    field.value = "";
    panel.remove();
  };
  panel.dispose = dispose;
  copy.addEventListener("click", async () => {
    status.textContent = (await copyText(field)) ? "Copied." : "Copying is blocked here: select the text and copy it yourself.";
  });
  done.addEventListener("click", () => {
    dispose();
    onDone();
  });
  field.addEventListener("focus", () => field.select());
  // A page left behind (back/forward cache) must not bring the secret back.
  window.addEventListener("pagehide", dispose, { once: true });
  queueMicrotask(() => field.isConnected && field.focus());
  return panel;
}

async function copyText(field) {
  try {
    await navigator.clipboard.writeText(field.value);
    return true;
  } catch {
    // Clipboard API refused (no permission, not a secure context): select it for the user.
    field.focus();
    field.select();
    return false;
  }
}
