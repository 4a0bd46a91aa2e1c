// What a sliced plate looks like to people: its thumbnail, the slicer's time estimate and its
// filaments as colour swatches with grams. Shared by the library page and the job dialog.

import { h } from "./dom.js";
import { duration, trayColour } from "./format.js";

/** The plate's thumbnail URL by content (cached for good: the URL names the content). */
export function thumbnailUrl(sha256, plate) {
  return `/api/v1/library/contents/${encodeURIComponent(sha256)}/plates/${plate}/thumbnail`;
}

/** "1 h 39 min" from the slicer's seconds; "" when it gave none. */
export function predicted(seconds) {
  if (seconds === null || seconds === undefined) return "";
  return duration(seconds / 60);
}

/** "12.3 g" (one decimal below 100 g, whole grams above); "" when unknown. */
export function grams(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "";
  return value < 100 ? `${value.toFixed(1)} g` : `${Math.round(value)} g`;
}

/** A colour swatch with its colour (set from JS: the CSP forbids style attributes). */
export function swatch(colour, label) {
  const css = trayColour(colour);
  const element = h("span", { class: css ? "swatch" : "swatch swatch-empty", role: "img", "aria-label": label });
  if (css) element.style.setProperty("background", css);
  return element;
}

/** The filaments of a plate as a list: swatch, type and grams each. */
export function filamentList(filaments, { compact = false } = {}) {
  return h(
    "ul",
    { class: compact ? "filaments filaments-compact" : "filaments", "aria-label": "Filaments" },
    filaments.map((f) => {
      const type = f.type || "Filament";
      const colour = trayColour(f.color);
      const label = `${type}${colour ? ` ${colour.toUpperCase()}` : ""}`;
      return h(
        "li",
        { class: "filament", "data-slot": String(f.slot) },
        swatch(f.color, label),
        h("span", { class: "filament-type" }, type),
        f.grams !== null && f.grams !== undefined ? h("span", { class: "filament-grams" }, grams(f.grams)) : null,
      );
    }),
  );
}

/** The plate's thumbnail image, or a neutral placeholder when the slicer added none. */
export function plateThumbnail(sha256, plate, { size = 96, alt = "" } = {}) {
  if (!plate.has_thumbnail) {
    return h("span", { class: "thumb thumb-none", "aria-hidden": "true" }, "No preview");
  }
  return h("img", {
    class: "thumb",
    src: thumbnailUrl(sha256, plate.index),
    alt,
    width: size,
    height: size,
    loading: "lazy",
    decoding: "async",
  });
}
