// <bulk-actions>: pausing, resuming or stopping several printers of the dashboard at once
// (operators and admins only; the dashboard does not create it for viewers). It owns the
// selection (serials), the "select all shown" box, the bar with the count and the three
// commands, the confirmation that names what is sent and what is skipped, the sending (a few
// at a time) and the result per printer. The selection outlives a run, so a printer that
// refused can be tried again; Escape clears it.

import { api, handleSessionProblem } from "./api.js";
import { confirmAction } from "./confirm-dialog.js";
import { h, replaceChildren, setText } from "./dom.js";
import { ACTION_LABELS } from "./printer-actions.js";
import { availableActions, commandPath, stateLabel } from "./printer-model.js";

const COMMANDS = ["pause", "resume", "stop"];
// Commands in flight at once. Each waits for its printer's acknowledgement (usually well under
// a second, up to the server's command timeout), so 100 printers take about 13 rounds; more at
// once would only queue behind the browser's 6 connections per host.
const CONCURRENCY = 8;
// Names spelled out in the confirmation before "and N more": enough to recognise the batch,
// short enough for a phone's dialog.
const NAMES_SHOWN = 5;
const DONE_TEXT = { pause: "paused", resume: "resumed", stop: "stopped" };
const PENDING_TEXT = { pause: "Pausing", resume: "Resuming", stop: "Stopping" };

/** True when `command` makes sense for the printer of `view` now (the printer has the last word). */
export function applies(view, command) {
  return !view.readOnly && availableActions(view)[command];
}

function byName(a, b) {
  return a.view.name.localeCompare(b.view.name, undefined, { numeric: true, sensitivity: "base" });
}

function printers(count) {
  return count === 1 ? "1 printer" : `${count} printers`;
}

/** "A, B and C", or "A, B, C, D, E and 3 more" past NAMES_SHOWN. */
function nameList(names) {
  if (names.length <= 1) return names.join("");
  const shown = names.length > NAMES_SHOWN ? names.slice(0, NAMES_SHOWN) : names.slice(0, -1);
  const rest = names.length > NAMES_SHOWN ? `${names.length - NAMES_SHOWN} more` : names.at(-1);
  return `${shown.join(", ")} and ${rest}`;
}

/** Why `command` is left out for the printer of `view`: "idle", "read-only"… */
function skipReason(view) {
  return view.readOnly ? "read-only" : stateLabel(view).toLowerCase();
}

/** How a refused command reads: the kind of answer, then the server's own detail. */
function refusal(err) {
  if (err?.status === 504) return `no answer: ${err.message}`;
  if (err?.status === 0) return `not sent: ${err.message}`;
  if (err?.status >= 400 && err?.status < 500) return `refused: ${err.message}`;
  return `failed: ${err?.message || err}`;
}

/** Run `work(item)` for every item, at most `limit` at a time; `work` must not throw. */
async function eachLimited(items, limit, work) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next];
      next += 1;
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export class BulkActions extends HTMLElement {
  /** `cards` is the dashboard's live Map of serial → <printer-card>. */
  setup({ cards }) {
    this.cards = cards;
    this.selected = new Set();
    this.busy = false;
    this.onKey = (event) => this.keydown(event);
    this.allBox = h("input", { type: "checkbox", id: "fleet-select-all" });
    this.allBox.addEventListener("change", () => this.selectAllShown());
    this.allText = h("span", {}, "Select all shown");
    this.announcer = h("p", { class: "visually-hidden", role: "status" });
    this.count = h("p", { class: "bulk-count" });
    this.progress = h("p", { class: "bulk-progress" });
    this.buttons = {};
    for (const command of COMMANDS) {
      const button = h(
        "button",
        { type: "button", class: command === "stop" ? "button button-small button-danger" : "button button-small", "data-bulk": command },
        ACTION_LABELS[command],
      );
      button.addEventListener("click", () => this.run(command));
      this.buttons[command] = button;
    }
    const clear = h("button", { type: "button", class: "button button-small bulk-clear", title: "Clear the selection (Escape)" }, "Clear selection");
    clear.addEventListener("click", () => this.clear());
    this.bar = h(
      "div",
      { class: "bulk-bar", role: "region", "aria-label": "Selected printers", hidden: true },
      h("div", { class: "bulk-info" }, this.count, this.progress),
      h("div", { class: "bulk-buttons" }, Object.values(this.buttons), clear),
    );
    this.resultsTitle = h("h2", { id: "bulk-results-title" });
    this.resultsList = h("ul", { class: "bulk-result-list" });
    this.dismiss = h("button", { type: "button", class: "button button-small", hidden: true }, "Dismiss");
    this.dismiss.addEventListener("click", () => this.dismissResults());
    // One polite live region, always in the page (a region that appears is often not read)
    // and filled once when a run ends, so the outcome is read out once.
    this.resultsBody = h("div", { role: "status", "aria-labelledby": "bulk-results-title" }, this.resultsTitle, this.resultsList);
    this.results = h("section", { class: "bulk-results" }, this.resultsBody, this.dismiss);
    replaceChildren(
      this,
      h("label", { class: "check bulk-all", for: "fleet-select-all" }, this.allBox, this.allText),
      this.announcer,
      this.results,
      this.bar,
    );
  }

  connectedCallback() {
    document.addEventListener("keydown", this.onKey);
  }

  disconnectedCallback() {
    document.removeEventListener("keydown", this.onKey);
  }

  keydown(event) {
    if (event.key !== "Escape" || event.defaultPrevented || this.selected.size === 0) return;
    // Escape belongs to an open dialog, and to a search box with text (it empties it).
    if (document.querySelector("dialog[open]")) return;
    const target = event.target;
    if (target instanceof HTMLInputElement && target.type === "search" && target.value) return;
    if (target instanceof HTMLSelectElement) return;
    this.clear();
  }

  /** Select or unselect one printer (its card's box changed). */
  toggle(serial, selected) {
    if (selected) this.selected.add(serial);
    else this.selected.delete(serial);
    this.refresh();
  }

  /** Unselect every printer. */
  clear() {
    const hadFocus = this.bar.contains(document.activeElement);
    this.selected.clear();
    for (const card of this.cards.values()) card.selected = false;
    this.refresh();
    setText(this.announcer, "Selection cleared");
    if (hadFocus) this.allBox.focus();
  }

  selectAllShown() {
    const shown = [...this.cards.values()].filter((card) => !card.hidden);
    const select = this.allBox.checked;
    for (const card of shown) {
      card.selected = select;
      if (select) this.selected.add(card.view.serial);
      else this.selected.delete(card.view.serial);
    }
    this.refresh();
    setText(this.announcer, select ? `${printers(shown.length)} shown selected, ${this.selected.size} in all` : `${printers(shown.length)} shown unselected`);
  }

  /** The selected cards, by name. */
  selectedCards() {
    return [...this.selected].map((serial) => this.cards.get(serial)).filter(Boolean).sort(byName);
  }

  /** Bring the box, the count and the buttons in line with the selection, filters and states. */
  refresh() {
    for (const serial of this.selected) if (!this.cards.has(serial)) this.selected.delete(serial);
    let shown = 0;
    let shownSelected = 0;
    for (const card of this.cards.values()) {
      if (card.hidden) continue;
      shown += 1;
      if (this.selected.has(card.view.serial)) shownSelected += 1;
    }
    this.allBox.checked = shown > 0 && shownSelected === shown;
    this.allBox.indeterminate = shownSelected > 0 && shownSelected < shown;
    this.allBox.disabled = shown === 0;
    setText(this.allText, `Select all shown (${shown})`);

    const total = this.selected.size;
    if (this.bar.hidden !== (total === 0)) this.bar.hidden = total === 0;
    const notShown = total - shownSelected;
    setText(this.count, `${printers(total)} selected${notShown > 0 ? ` (${notShown} not shown by the filters)` : ""}`);
    const cards = this.selectedCards();
    for (const command of COMMANDS) {
      const n = cards.filter((card) => applies(card.view, command)).length;
      const button = this.buttons[command];
      setText(button, n > 0 && n < total ? `${ACTION_LABELS[command]} (${n})` : ACTION_LABELS[command]);
      // aria-disabled, not disabled: a button going inert under the focus would drop it.
      const off = this.busy || n === 0;
      if ((button.getAttribute("aria-disabled") === "true") !== off) button.setAttribute("aria-disabled", String(off));
      button.title = n === 0 ? `No selected printer can be told to ${command} now` : `${ACTION_LABELS[command]} ${printers(n)}`;
    }
  }

  async run(command) {
    if (this.busy || this.buttons[command].getAttribute("aria-disabled") === "true") return;
    const cards = this.selectedCards();
    const targets = cards.filter((card) => applies(card.view, command));
    const skipped = cards.filter((card) => !applies(card.view, command));
    if (targets.length === 0) return;
    const label = ACTION_LABELS[command];
    const names = nameList(targets.map((card) => card.view.name));
    const consequence = command === "stop" ? " This ends their prints; a stopped print cannot be resumed." : "";
    const skippedText = skipped.length
      ? ` Skipped, as ${command} does not apply to them: ${nameList(skipped.map((card) => `${card.view.name} (${skipReason(card.view)})`))}.`
      : "";
    const sure = await confirmAction({
      title: `${label} ${printers(targets.length)}?`,
      message: `${label}: ${names}.${consequence}${skippedText}`,
      confirmLabel: `${label} ${printers(targets.length)}`,
      danger: command === "stop",
    });
    if (!sure) return;
    await this.send(command, targets, skipped);
  }

  async send(command, targets, skipped) {
    this.busy = true;
    this.refresh();
    const outcomes = new Map();
    let finished = 0;
    let signedOut = false;
    const step = () => setText(this.progress, `${PENDING_TEXT[command]}… ${finished} of ${targets.length} answered`);
    step();
    await eachLimited(targets, CONCURRENCY, async (card) => {
      if (signedOut) return;
      const serial = card.view.serial;
      try {
        await api(commandPath(serial, command), { method: "POST" });
        outcomes.set(serial, { ok: true, text: DONE_TEXT[command] });
        card.showActionError("");
      } catch (err) {
        if (handleSessionProblem(err)) {
          signedOut = true;
          return;
        }
        const text = refusal(err);
        outcomes.set(serial, { ok: false, text });
        card.showActionError(`${ACTION_LABELS[command]} ${text}`);
      }
      finished += 1;
      step();
    });
    this.busy = false;
    if (signedOut) return;
    this.showResults(command, targets, skipped, outcomes);
    this.refresh();
  }

  showResults(command, targets, skipped, outcomes) {
    const done = targets.filter((card) => outcomes.get(card.view.serial)?.ok).length;
    const refused = targets.length - done;
    const parts = [`${done} ${DONE_TEXT[command]}`];
    if (refused) parts.push(`${refused} not ${DONE_TEXT[command]}`);
    if (skipped.length) parts.push(`${skipped.length} skipped`);
    const summary = `${ACTION_LABELS[command]}: ${parts.join(", ")}`;
    setText(this.progress, refused ? `${summary} (details above the printers)` : summary);
    const item = (card, outcome, text) =>
      h("li", { "data-serial": card.view.serial, "data-outcome": outcome }, h("strong", {}, card.view.name), " — ", text);
    replaceChildren(
      this.resultsList,
      targets.map((card) => {
        const outcome = outcomes.get(card.view.serial);
        return item(card, outcome?.ok ? "done" : "refused", outcome?.text || "not sent");
      }),
      skipped.map((card) => item(card, "skipped", `skipped (${skipReason(card.view)})`)),
    );
    setText(this.resultsTitle, summary);
    this.results.dataset.outcome = refused ? "partial" : "done";
    this.dismiss.hidden = false;
  }

  dismissResults() {
    replaceChildren(this.resultsList);
    setText(this.resultsTitle, "");
    delete this.results.dataset.outcome;
    this.dismiss.hidden = true;
    this.allBox.focus();
  }
}

if (!customElements.get("bulk-actions")) customElements.define("bulk-actions", BulkActions);
