// Where printers come from: the REST list (paged) and the WebSocket subscription messages.

import { api } from "./api.js";

export const LIVE_PATH = "/api/v1/ws";
// The API's largest page (storage.paging.MAX_LIMIT): a 1,000-printer farm in one request.
const PAGE = 1000;

/** Every printer of GET /api/v1/printers, following the pages. */
export async function fetchAllPrinters() {
  const printers = [];
  for (let offset = 0; ; offset += PAGE) {
    const page = await api(`/api/v1/printers?offset=${offset}&limit=${PAGE}`);
    if (Array.isArray(page)) return page;
    printers.push(...page.items);
    if (page.items.length === 0 || printers.length >= page.total) return printers;
  }
}

/** One printer of GET /api/v1/printers/{serial}. */
export function fetchPrinter(serial) {
  return api(`/api/v1/printers/${encodeURIComponent(serial)}`);
}

/** The messages that subscribe a new WebSocket: all printers, or one. */
export function liveSubscription(serial) {
  return [{ action: "subscribe", topics: [serial ? `printer:${serial}` : "printers"] }];
}
