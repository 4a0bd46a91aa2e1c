// Small charts for the history page, drawn as inline SVG by this module (no chart library):
// horizontal bars, one row per item, each bar made of coloured segments (e.g. done, failed,
// cancelled). Colours come from classes in history.css, so both themes apply; each chart is a
// <figure> whose SVG carries a text summary for screen readers (the numbers are in the table).

const SVG = "http://www.w3.org/2000/svg";
// In viewBox units; the SVG scales to its container's width.
const WIDTH = 420;
const LABEL_WIDTH = 110;
const VALUE_WIDTH = 62;
const ROW = 28;
const BAR = 16;
// Labels longer than this are cut with an ellipsis (SVG text does not wrap).
const LABEL_CHARS = 14;

function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  for (const child of children) element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return element;
}

function cut(text) {
  return text.length > LABEL_CHARS ? `${text.slice(0, LABEL_CHARS - 1)}…` : text;
}

/**
 * A horizontal bar chart.
 * rows: [{ label, segments: [{ value, kind, name }] }]; kind picks the colour class.
 * format(total) gives the text at each bar's end; summary is the chart's accessible text.
 */
export function barChart({ title, rows, format, summary, legend = [] }) {
  const figure = document.createElement("figure");
  figure.className = "chart";
  const caption = document.createElement("figcaption");
  caption.textContent = title;
  figure.append(caption);
  if (rows.length === 0) {
    const none = document.createElement("p");
    none.className = "chart-empty";
    none.textContent = "Nothing to show yet.";
    figure.append(none);
    return figure;
  }
  const max = Math.max(...rows.map((r) => r.segments.reduce((sum, s) => sum + s.value, 0)), 0);
  const span = WIDTH - LABEL_WIDTH - VALUE_WIDTH;
  const height = rows.length * ROW + 4;
  const chart = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${height}`,
    class: "chart-svg",
    role: "img",
    "aria-label": summary,
    preserveAspectRatio: "xMinYMin meet",
  });
  rows.forEach((row, i) => {
    const y = i * ROW + 2;
    const middle = y + ROW / 2;
    chart.append(svg("text", { x: LABEL_WIDTH - 8, y: middle, class: "chart-label", "text-anchor": "end", "dominant-baseline": "middle" }, svg("title", {}, row.label), cut(row.label)));
    chart.append(svg("rect", { x: LABEL_WIDTH, y: middle - BAR / 2, width: span, height: BAR, rx: 3, class: "chart-track" }));
    let x = LABEL_WIDTH;
    let total = 0;
    for (const segment of row.segments) {
      total += segment.value;
      if (segment.value <= 0 || max <= 0) continue;
      const width = (segment.value / max) * span;
      chart.append(
        svg(
          "rect",
          { x, y: middle - BAR / 2, width: Math.max(width, 1), height: BAR, class: `chart-bar chart-${segment.kind}` },
          svg("title", {}, `${row.label}: ${segment.name || segment.kind} ${format(segment.value)}`),
        ),
      );
      x += width;
    }
    chart.append(svg("text", { x: WIDTH - VALUE_WIDTH + 8, y: middle, class: "chart-value", "dominant-baseline": "middle" }, format(total)));
  });
  figure.append(chart);
  if (legend.length > 0) {
    const list = document.createElement("ul");
    list.className = "chart-legend";
    for (const [kind, name] of legend) {
      const item = document.createElement("li");
      const key = svg("svg", { width: 12, height: 12, viewBox: "0 0 12 12", "aria-hidden": "true" }, svg("rect", { width: 12, height: 12, rx: 2, class: `chart-bar chart-${kind}` }));
      item.append(key, ` ${name}`);
      list.append(item);
    }
    figure.append(list);
  }
  return figure;
}
