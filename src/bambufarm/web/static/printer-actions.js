// Pause, resume and stop, shared by the card and the detail page. Stop asks first: it ends
// the print and cannot be undone.

import { api, handleSessionProblem } from "./api.js";
import { confirmAction } from "./confirm-dialog.js";
import { commandPath } from "./printer-model.js";

export const ACTION_LABELS = { pause: "Pause", resume: "Resume", stop: "Stop" };
const PENDING_LABELS = { pause: "Pausing…", resume: "Resuming…", stop: "Stopping…" };

/** Ask before a stop; true when the command may go out. */
export async function confirmCommand(view, command) {
  if (command !== "stop") return true;
  const what = view.job.name ? `“${view.job.name}” on ${view.name}` : `the print on ${view.name}`;
  return confirmAction({
    title: `Stop ${view.name}?`,
    message: `This ends ${what}. A stopped print cannot be resumed.`,
    confirmLabel: "Stop print",
    danger: true,
  });
}

/**
 * Run a command from a button: confirmed first when it is a stop, the busy label while it
 * runs, the error in `errorBox` if it fails. The buttons are marked busy with aria-disabled
 * rather than `disabled`, which would throw the keyboard focus out of the card.
 */
export async function commandFromButton(button, view, command, errorBox) {
  if (button.getAttribute("aria-disabled") === "true") return;
  if (!(await confirmCommand(view, command))) return;
  const label = button.textContent;
  const group = button.parentElement ? [...button.parentElement.querySelectorAll("button")] : [button];
  errorBox.textContent = "";
  errorBox.hidden = true;
  for (const each of group) each.setAttribute("aria-disabled", "true");
  button.textContent = PENDING_LABELS[command] || label;
  try {
    await api(commandPath(view.serial, command), { method: "POST" });
  } catch (err) {
    if (!handleSessionProblem(err)) {
      errorBox.textContent = `${ACTION_LABELS[command] || command} failed: ${err.message}`;
      errorBox.hidden = false;
    }
  } finally {
    button.textContent = label;
    for (const each of group) each.removeAttribute("aria-disabled");
  }
}
