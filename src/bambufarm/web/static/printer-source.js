// Where printers come from: the REST list and detail (settings, link, job at a glance), the
// live status (GET .../status or the WebSocket's `snapshot`), and the WebSocket's `updates`,
// which carry only the status parts that changed. `PrinterStore` keeps both halves per serial.

import { api } from "./api.js";
import { printerView } from "./printer-model.js";

export const LIVE_PATH = "/api/v1/ws";
// The API's largest page (storage.paging.MAX_LIMIT): a 1,000-printer farm in one request.
const PAGE = 1000;

/** Every printer of GET /api/v1/printers, following the pages. */
export async function fetchAllPrinters() {
  const printers = [];
  for (let offset = 0; ; offset += PAGE) {
    const page = await api(`/api/v1/printers?offset=${offset}&limit=${PAGE}`);
    printers.push(...page.items);
    if (page.items.length === 0 || printers.length >= page.total) return printers;
  }
}

/** One printer of GET /api/v1/printers/{serial}. */
export function fetchPrinter(serial) {
  return api(`/api/v1/printers/${encodeURIComponent(serial)}`);
}

/** Its full live status, GET /api/v1/printers/{serial}/status. */
export function fetchStatus(serial) {
  return api(`/api/v1/printers/${encodeURIComponent(serial)}/status`);
}

/** The messages that subscribe a new WebSocket: all printers, or one. */
export function liveSubscription(serial) {
  return [{ type: "subscribe", topics: [serial ? `printer:${serial}` : "printers"] }];
}

/** Per serial: the printer (`info`) and its live status (`status`, parts replaced as they come). */
export class PrinterStore {
  constructor() {
    this.entries = new Map();
  }

  has(serial) {
    return this.entries.has(serial);
  }

  serials() {
    return [...this.entries.keys()];
  }

  /** Set the printer's REST representation; returns its view. */
  setInfo(info) {
    const entry = this.entries.get(info.serial);
    if (entry) entry.info = info;
    else this.entries.set(info.serial, { info, status: null });
    return this.view(info.serial);
  }

  /** Set a full status; the view, or null while the printer itself is not known yet. */
  setStatus(status) {
    const entry = this.entries.get(status.serial);
    if (!entry) return null;
    entry.status = status;
    return this.view(status.serial);
  }

  /** Replace the parts of an `updates` item; the view, or null for an unknown printer. */
  applyParts(update) {
    const entry = this.entries.get(update.serial);
    if (!entry) return null;
    entry.status = { ...(entry.status || { serial: update.serial }), ...update.parts };
    return this.view(update.serial);
  }

  remove(serial) {
    this.entries.delete(serial);
  }

  view(serial) {
    const entry = this.entries.get(serial);
    return entry ? printerView(entry.info, entry.status) : null;
  }
}

/**
 * Apply one WebSocket frame to `store`. Calls `changed(view)` for each printer whose view
 * changed, `unknown(serial)` for a printer the store has not got yet (fetch it), and
 * `removed(serial)` for a printer that left the farm.
 */
export function applyFrame(store, frame, { changed, unknown, removed }) {
  if (frame.type === "snapshot") {
    for (const status of frame.printers || []) {
      const view = store.setStatus(status);
      if (view) changed(view);
      else unknown(status.serial, status);
    }
  } else if (frame.type === "updates") {
    for (const update of frame.printers || []) {
      const view = store.applyParts(update);
      if (view) changed(view);
    }
    for (const event of frame.events || []) {
      if (event.kind === "printer_removed") removed(event.serial);
      else if (event.kind === "printer_added" && !store.has(event.serial)) unknown(event.serial, null);
    }
  }
}
