// <temperature-chart>: the last hour of a printer's temperatures as an inline SVG, drawn here
// (no chart library). The server keeps the hour (GET .../temperatures, so a reload loses
// nothing); live readings from the WebSocket are added with the server's rule: one point per
// 10 s, at once when a target changes. Actual values are solid lines, targets dashed.

import { h, replaceChildren, setText } from "./dom.js";
import { degrees } from "./format.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 640;
const HEIGHT = 220;
const PAD = { left: 38, right: 10, top: 10, bottom: 24 };
const WINDOW_S = 3600;
const INTERVAL_S = 10;
// Samples further apart than this were not one curve (the printer was away): break the line.
const MAX_STEP_S = 120;
// Redraw at most this often however fast readings come (a report a second per printer).
const REDRAW_MS = 1000;
// The window slides even when nothing is reported.
const SLIDE_MS = 30_000;

/** The curves: [channel, label, class]; targets share their heater's colour, dashed. */
export const CURVES = [
  ["nozzle", "Nozzle", "curve-nozzle"],
  ["left_nozzle", "Left nozzle", "curve-left"],
  ["bed", "Bed", "curve-bed"],
  ["chamber", "Chamber", "curve-chamber"],
];
const CHANNELS = CURVES.flatMap(([name]) => [name, `${name}_target`]);

function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  for (const child of children) element.append(child);
  return element;
}

/** The reading of a printer view as chart channels (null where unknown). */
export function readingOf(view) {
  const t = view.temps;
  const right = t.extruders.find((e) => e.id === 0);
  const left = t.extruders.find((e) => e.id === 1);
  const dual = right && left;
  return {
    nozzle: dual ? right.temp : t.nozzle,
    nozzle_target: dual ? right.target : t.nozzleTarget,
    left_nozzle: dual ? left.temp : null,
    left_nozzle_target: dual ? left.target : null,
    bed: t.bed,
    bed_target: t.bedTarget,
    // Models without a chamber thermometer report a fixed placeholder: not a curve.
    chamber: view.chamberSensor ? t.chamber : null,
    chamber_target: view.chamberSensor ? t.chamberTarget : null,
  };
}

export class TemperatureChart extends HTMLElement {
  connectedCallback() {
    if (this.samples) return;
    this.samples = []; // {t (ms, this browser's clock), v: {channel: °C|null}}
    this.off = new Set();
    this.chamberSensor = true;
    this.plot = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart-svg", role: "img", "aria-labelledby": "chart-summary" });
    this.summary = h("p", { id: "chart-summary", class: "chart-summary", "aria-live": "off" });
    this.status = h("p", { class: "card-model", role: "status" });
    this.legend = h("div", { class: "chart-legend", role: "group", "aria-label": "Curves shown" });
    replaceChildren(this, this.plot, this.summary, this.legend, this.status);
    this.slider = setInterval(() => this.redraw(), SLIDE_MS);
  }

  disconnectedCallback() {
    clearInterval(this.slider);
    clearTimeout(this.timer);
  }

  /** Replace the samples with the server's history (GET .../temperatures). */
  setHistory(body) {
    // The server's clock may differ from this browser's: keep the samples' age, not their date.
    const skew = Date.now() - Date.parse(body.now);
    this.samples = body.times.map((t, i) => {
      const v = {};
      for (const channel of CHANNELS) v[channel] = body.series[channel]?.[i] ?? null;
      return { t: t * 1000 + skew, v };
    });
    setText(this.status, this.samples.length ? "" : "No readings in the last hour yet.");
    this.scheduleRedraw();
  }

  /** Say the history could not be loaded; live readings still draw. */
  setProblem(text) {
    setText(this.status, text);
  }

  /** Add a live reading (from a printer view) by the server's sampling rule. */
  addReading(view) {
    this.chamberSensor = view.chamberSensor;
    const v = readingOf(view);
    const now = Date.now();
    const last = this.samples[this.samples.length - 1];
    const stepped = last && CHANNELS.some((c) => c.endsWith("_target") && (last.v[c] ?? null) !== (v[c] ?? null));
    if (!last || now - last.t >= INTERVAL_S * 1000 || stepped) this.samples.push({ t: now, v });
    else this.latest = { t: now, v };
    const cutoff = now - WINDOW_S * 1000;
    while (this.samples.length && this.samples[0].t < cutoff) this.samples.shift();
    if (this.samples.length) setText(this.status, "");
    this.scheduleRedraw();
  }

  scheduleRedraw() {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.redraw();
    }, this.drawn ? REDRAW_MS : 0);
  }

  redraw() {
    if (!this.samples) return;
    this.drawn = true;
    const now = Date.now();
    const from = now - WINDOW_S * 1000;
    const points = [...this.samples];
    if (this.latest && this.latest.t > (points[points.length - 1]?.t ?? 0)) points.push(this.latest);
    const present = CURVES.filter(([name]) => points.some((p) => p.v[name] !== null || p.v[`${name}_target`] > 0));
    let top = 100;
    for (const p of points) {
      for (const channel of CHANNELS) {
        const value = p.v[channel];
        if (value !== null && value > top) top = value;
      }
    }
    top = Math.ceil(top / 50) * 50;
    const x = (t) => PAD.left + ((t - from) / (WINDOW_S * 1000)) * (WIDTH - PAD.left - PAD.right);
    const y = (value) => PAD.top + (1 - value / top) * (HEIGHT - PAD.top - PAD.bottom);
    const grid = svg("g", { class: "chart-grid" });
    for (let value = 0; value <= top; value += top > 200 ? 100 : 50) {
      grid.append(svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(value), y2: y(value) }));
      const label = svg("text", { x: PAD.left - 6, y: y(value) + 4, "text-anchor": "end" });
      label.textContent = `${value}°`;
      grid.append(label);
    }
    for (let minutes = 60; minutes >= 0; minutes -= 15) {
      const label = svg("text", { x: x(now - minutes * 60_000), y: HEIGHT - 6, "text-anchor": minutes === 0 ? "end" : "middle" });
      label.textContent = minutes === 0 ? "now" : `−${minutes} min`;
      grid.append(label);
    }
    const curves = svg("g", { class: "chart-curves" });
    let drawnPoints = 0;
    for (const [name, , css] of present) {
      if (this.off.has(name)) continue;
      for (const channel of [`${name}_target`, name]) {
        const d = this.pathOf(points, channel, from, x, y, channel.endsWith("_target"));
        if (!d.path) continue;
        drawnPoints += d.count;
        curves.append(svg("path", { d: d.path, class: `curve ${css}${channel.endsWith("_target") ? " curve-target" : ""}`, "data-channel": channel }));
      }
    }
    this.plot.setAttribute("data-points", String(drawnPoints));
    this.plot.replaceChildren(grid, curves);
    this.showLegend(present, points[points.length - 1]);
  }

  /** An SVG path of one channel: lines between samples, broken at unknowns and long gaps. */
  pathOf(points, channel, from, x, y, stepped) {
    let path = "";
    let count = 0;
    let previous = null;
    for (const p of points) {
      const value = p.v[channel];
      if (value === null || value === undefined || p.t < from) {
        previous = null;
        continue;
      }
      const px = x(p.t).toFixed(1);
      const py = y(value).toFixed(1);
      if (previous && p.t - previous.t <= MAX_STEP_S * 1000) {
        // A target holds until it is changed: a step, not a slope.
        path += stepped ? `H${px}V${py}` : `L${px},${py}`;
      } else {
        path += `M${px},${py}`;
      }
      previous = p;
      count += 1;
    }
    return { path, count };
  }

  showLegend(present, last) {
    const parts = [];
    const buttons = present.map(([name, label, css]) => {
      const value = last?.v[name] ?? null;
      const target = last?.v[`${name}_target`] ?? null;
      parts.push(`${label} ${degrees(value)}${target > 0 ? ` of ${degrees(target)}` : ""}`);
      const button = h(
        "button",
        { type: "button", class: `chart-key ${css}`, "aria-pressed": String(!this.off.has(name)), "data-curve": name },
        h("span", { class: "chart-swatch", "aria-hidden": "true" }),
        label,
      );
      button.addEventListener("click", () => {
        if (this.off.has(name)) this.off.delete(name);
        else this.off.add(name);
        this.redraw();
        this.legend.querySelector(`[data-curve="${name}"]`)?.focus();
      });
      return button;
    });
    replaceChildren(this.legend, buttons);
    setText(
      this.summary,
      parts.length ? `Temperatures over the last hour; now: ${parts.join(", ")}. Dashed lines are targets.` : "Temperatures over the last hour: no readings yet.",
    );
  }
}

if (!customElements.get("temperature-chart")) customElements.define("temperature-chart", TemperatureChart);
