// Pause, resume and stop, shared by the card and the detail page. Stop asks first: it ends
// the print and cannot be undone.

import { api, handleSessionProblem } from "./api.js";
import { confirmAction } from "./confirm-dialog.js";
import { commandPath } from "./printer-model.js";

export const ACTION_LABELS = { pause: "Pause", resume: "Resume", stop: "Stop" };
const PENDING_LABELS = { pause: "Pausing…", resume: "Resuming…", stop: "Stopping…" };

/** Send `command` to the printer of `view` (after confirming a stop); throws ApiProblem. */
export async function runPrinterCommand(view, command) {
  if (command === "stop") {
    const what = view.job.name ? `“${view.job.name}” on ${view.name}` : `the print on ${view.name}`;
    const sure = await confirmAction({
      title: `Stop ${view.name}?`,
      message: `This ends ${what}. A stopped print cannot be resumed.`,
      confirmLabel: "Stop print",
      danger: true,
    });
    if (!sure) return false;
  }
  await api(commandPath(view.serial, command), { method: "POST" });
  return true;
}

/** Run a command from a button: busy label while it runs, the error in `errorBox` if it fails. */
export async function commandFromButton(button, view, command, errorBox) {
  const label = button.textContent;
  const group = button.parentElement ? [...button.parentElement.querySelectorAll("button")] : [button];
  errorBox.textContent = "";
  errorBox.hidden = true;
  for (const each of group) each.disabled = true;
  button.textContent = PENDING_LABELS[command] || label;
  try {
    await runPrinterCommand(view, command);
  } catch (err) {
    if (!handleSessionProblem(err)) {
      errorBox.textContent = `${ACTION_LABELS[command] || command} failed: ${err.message}`;
      errorBox.hidden = false;
    }
  } finally {
    button.textContent = label;
    for (const each of group) each.disabled = false;
  }
}
