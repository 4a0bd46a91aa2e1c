// The one place that knows the API's printer schema: turns a printer of
// GET /api/v1/printers (or a WebSocket update carrying the same schema) into the view model
// the components draw, and sorts printers into the dashboard's categories.

/** Connection states in which the printer talks to us. */
const CONNECTED = new Set(["online", "stale"]);
const PRINTING_STATES = new Set(["RUNNING", "PREPARE", "SLICING", "INIT"]);
const SEVERE_HMS = new Set(["fatal", "serious"]);
// print_error 0x0300400C: the printer's "task was cancelled" after a stop on purpose — shown
// for a few seconds (protocol.md §1.5.9), not a fault.
export const PRINT_ERROR_CANCELLED = 0x0300400c;

// Models with a chamber thermometer; the others report a fixed placeholder (5 °C) in
// chamber_temper (protocol.md §1.5.2), which must not read as a cold chamber.
const CHAMBER_SENSOR_MODELS = /^(X1|H2|X2)/i;

export const CATEGORIES = ["printing", "paused", "idle", "error", "offline"];
export const CATEGORY_LABELS = {
  printing: "Printing",
  paused: "Paused",
  idle: "Idle",
  error: "Error",
  offline: "Offline",
};

/**
 * The view model of one printer from what the API said about it: `info` is the printer of
 * GET /api/v1/printers (settings, link, job and temperatures at a glance) and `status` its
 * PrinterStatus (GET .../status, or the WebSocket's full status plus later parts), which may
 * still be missing; its parts win over the summary when present.
 */
export function printerView(info, status = null) {
  const live = status || {};
  const job = live.job || info.job || {};
  const temps = live.temperatures || info.temperatures || {};
  const ams = live.ams || {};
  const connection = live.connection || info.connection || {};
  const developerMode = "developer_mode" in live ? live.developer_mode : info.developer_mode;
  const hms = (live.hms || []).map((entry) => ({
    code: entry.code || "",
    severity: entry.severity || "unknown",
    text: entry.summary || "",
    url: entry.wiki_url || "",
  }));
  const view = {
    serial: info.serial,
    name: info.name || info.serial,
    model: info.model_name || info.model || "",
    enabled: info.enabled !== false,
    connection: { state: connection.state || "offline", reason: connection.reason || "" },
    // false: the printer takes only signed commands (Developer Mode off); null: it does not say.
    readOnly: developerMode === false,
    gcodeState: job.gcode_state || "UNKNOWN",
    job: {
      name: job.subtask_name || job.file || "",
      progress: numberOrNull(job.progress),
      layer: numberOrNull(job.layer),
      totalLayers: numberOrNull(job.total_layers),
      remainingMinutes: numberOrNull(job.remaining_minutes),
      printError: job.print_error || 0,
    },
    temps: {
      nozzle: numberOrNull(temps.nozzle),
      nozzleTarget: numberOrNull(temps.nozzle_target),
      bed: numberOrNull(temps.bed),
      bedTarget: numberOrNull(temps.bed_target),
      chamber: numberOrNull(temps.chamber),
      chamberTarget: numberOrNull(temps.chamber_target),
      // Dual-nozzle printers: extruder 0 is the right nozzle, 1 the left (protocol.md §1.5.2).
      extruders: (temps.extruders || []).map((e) => ({
        id: e.id,
        temp: numberOrNull(e.temp),
        target: numberOrNull(e.target),
      })),
    },
    ams: {
      units: (ams.units || []).map((unit) => ({
        id: unit.id,
        humidity: numberOrNull(unit.humidity),
        temp: numberOrNull(unit.temp),
        trays: (unit.trays || []).map((tray) => trayView(tray, unit.id)),
      })),
      external: (ams.external || []).map((tray) => trayView(tray, null)),
      trayNow: numberOrNull(ams.tray_now),
    },
    // Before the full status arrives only the count is known.
    chamberSensor: CHAMBER_SENSOR_MODELS.test(info.model_name || ""),
    hms,
    hmsCount: "hms" in live ? hms.length : info.hms_count || 0,
    lights: live.lights || {},
    speedLevel: numberOrNull(live.speed?.level),
  };
  view.category = categoryOf(view);
  return view;
}

// tray_now (protocol.md §1.5): unit * 4 + slot for an AMS, the unit id (128-135) for an
// AMS HT's single slot, 254 the external spool, 255 none.
const NO_TRAY = 255;
const AMS_HT_FIRST = 128;

/** "AMS 1", or "AMS HT 1" for the single-slot AMS HT units (ids from 128). */
export function unitLabel(unitId) {
  return unitId >= AMS_HT_FIRST ? `AMS HT ${unitId - AMS_HT_FIRST + 1}` : `AMS ${unitId + 1}`;
}

/** True when `tray` is the one the printer feeds from now. */
export function trayInUse(tray, trayNow) {
  return trayNow !== null && trayNow !== NO_TRAY && tray.global === trayNow;
}

function trayView(tray, unitId) {
  let global = tray.id;
  if (unitId !== null) global = unitId >= AMS_HT_FIRST ? unitId : unitId * 4 + tray.id;
  return {
    id: tray.id,
    unit: unitId,
    global,
    type: tray.type || "",
    color: tray.color || "",
    remain: numberOrNull(tray.remain),
  };
}

function numberOrNull(value) {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/** A print_error as printers show it: 50348044 → "0300_400C". */
export function printErrorText(value) {
  const hex = (value >>> 0).toString(16).toUpperCase().padStart(8, "0");
  return `${hex.slice(0, 4)}_${hex.slice(4)}`;
}

/** True when the job ended or stopped for a fault (not a stop on purpose). */
export function hasPrintError(view) {
  return view.job.printError !== 0 && view.job.printError !== PRINT_ERROR_CANCELLED;
}

/** True when the printer needs a person: a severe HMS, a print fault, a refused link. */
export function hasError(view) {
  return (
    view.hms.some((entry) => SEVERE_HMS.has(entry.severity)) ||
    hasPrintError(view) ||
    view.connection.state === "auth_failed" ||
    view.connection.state === "tls_failed"
  );
}

/** One of CATEGORIES: where the dashboard counts and files this printer. */
export function categoryOf(view) {
  if (view.connection.state === "auth_failed" || view.connection.state === "tls_failed") return "error";
  if (!CONNECTED.has(view.connection.state)) return "offline";
  if (hasError(view)) return "error";
  if (view.gcodeState === "PAUSE") return "paused";
  if (PRINTING_STATES.has(view.gcodeState)) return "printing";
  return "idle";
}

const CONNECTION_LABELS = {
  connecting: "Connecting",
  stale: "Not answering",
  offline: "Offline",
  auth_failed: "Access code refused",
  tls_failed: "Certificate refused",
  disabled: "Disabled",
};
const IDLE_LABELS = { FINISH: "Finished", FAILED: "Stopped" };

/** The short state a person reads on the card: "Printing", "Finished", "Access code refused"… */
export function stateLabel(view) {
  if (!CONNECTED.has(view.connection.state)) return CONNECTION_LABELS[view.connection.state] || "Offline";
  if (view.category === "printing" && view.gcodeState === "PREPARE") return "Preparing";
  if (view.category === "idle") return IDLE_LABELS[view.gcodeState] || "Idle";
  if (view.category === "error" && view.gcodeState === "FAILED") return "Failed";
  return CATEGORY_LABELS[view.category];
}

/** Which of pause / resume / stop make sense now (the printer has the last word). */
export function availableActions(view) {
  const connected = CONNECTED.has(view.connection.state);
  const busy = view.gcodeState === "RUNNING" || view.gcodeState === "PREPARE";
  return {
    pause: connected && busy,
    resume: connected && view.gcodeState === "PAUSE",
    stop: connected && (busy || view.gcodeState === "PAUSE"),
  };
}

/** The REST path of a printer command. */
export function commandPath(serial, command) {
  return `/api/v1/printers/${encodeURIComponent(serial)}/${command}`;
}
