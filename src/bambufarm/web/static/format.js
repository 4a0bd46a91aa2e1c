// Numbers as people read them on the farm floor: durations, clock times, temperatures.

/** "2 h 05 min", "12 min", "<1 min"; "" when unknown. */
export function duration(minutes) {
  if (minutes === null || minutes === undefined || !Number.isFinite(minutes) || minutes < 0) return "";
  if (minutes < 1) return "<1 min";
  const hours = Math.floor(minutes / 60);
  const rest = Math.round(minutes % 60);
  if (hours === 0) return `${rest} min`;
  return `${hours} h ${String(rest).padStart(2, "0")} min`;
}

/** The wall-clock time `minutes` from `now`: "14:35", or "Tue 09:10" when not today. */
export function etaClock(minutes, now = new Date()) {
  if (minutes === null || minutes === undefined || !Number.isFinite(minutes) || minutes < 0) return "";
  const at = new Date(now.getTime() + minutes * 60_000);
  const time = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (at.toDateString() === now.toDateString()) return time;
  return `${at.toLocaleDateString([], { weekday: "short" })} ${time}`;
}

/** "215°" for a reading; "—" when unknown. */
export function degrees(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  return `${Math.round(value)}°`;
}

/** "/220°" for a target above zero, else "" (a heater that is off has no target worth showing). */
export function targetDegrees(value) {
  if (value === null || value === undefined || !Number.isFinite(value) || value <= 0) return "";
  return `/${Math.round(value)}°`;
}

/** "42%" or "" when unknown (-1 or missing). */
export function percent(value) {
  if (value === null || value === undefined || !Number.isFinite(value) || value < 0) return "";
  return `${Math.round(value)}%`;
}

/** A CSS colour from the printer's RRGGBBAA hex (alpha dropped); null when it is not one. */
export function trayColour(hex) {
  if (typeof hex !== "string") return null;
  const match = /^#?([0-9a-fA-F]{6})([0-9a-fA-F]{2})?$/.exec(hex.trim());
  return match ? `#${match[1]}` : null;
}
