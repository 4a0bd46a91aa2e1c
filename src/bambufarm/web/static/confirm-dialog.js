// A modal confirmation on the native <dialog>: the browser traps focus inside it and Escape
// cancels. Focus starts on "Cancel", so a stray Enter never confirms a destructive action.

import { h } from "./dom.js";

/** Ask the user; resolves true only when they press the confirm button. */
export function confirmAction({ title, message, confirmLabel = "Confirm", danger = false }) {
  return new Promise((resolve) => {
    const opener = document.activeElement;
    const titleId = `confirm-title-${Date.now()}`;
    const cancel = h("button", { type: "button", class: "button", value: "cancel" }, "Cancel");
    const confirm = h(
      "button",
      { type: "button", class: danger ? "button button-danger-solid" : "button button-primary", value: "confirm" },
      confirmLabel,
    );
    const dialog = h(
      "dialog",
      { class: "confirm", "aria-labelledby": titleId, "aria-describedby": `${titleId}-text` },
      h("h2", { id: titleId }, title),
      h("p", { id: `${titleId}-text` }, message),
      h("div", { class: "dialog-actions" }, cancel, confirm),
    );
    cancel.addEventListener("click", () => dialog.close("cancel"));
    confirm.addEventListener("click", () => dialog.close("confirm"));
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
      resolve(dialog.returnValue === "confirm");
    });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}
