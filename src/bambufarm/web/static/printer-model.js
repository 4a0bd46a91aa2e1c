// The one place that knows the API's printer schema: turns a printer of
// GET /api/v1/printers (or a WebSocket update carrying the same schema) into the view model
// the components draw, and sorts printers into the dashboard's categories.

/** Connection states in which the printer talks to us. */
const CONNECTED = new Set(["online", "stale"]);
const PRINTING_STATES = new Set(["RUNNING", "PREPARE", "SLICING", "INIT"]);
const SEVERE_HMS = new Set(["fatal", "serious"]);

export const CATEGORIES = ["printing", "paused", "idle", "error", "offline"];
export const CATEGORY_LABELS = {
  printing: "Printing",
  paused: "Paused",
  idle: "Idle",
  error: "Error",
  offline: "Offline",
};

/** The view model of one printer from its API representation. */
export function printerView(printer) {
  const status = printer.status || {};
  const job = status.job || {};
  const temps = status.temperatures || {};
  const ams = status.ams || {};
  const hms = (status.hms || []).map((entry) => ({
    code: entry.code || "",
    severity: entry.severity || "unknown",
    text: entry.text || entry.description || "",
    url: entry.url || entry.wiki_url || "",
  }));
  const connection = printer.connection || {};
  const view = {
    serial: printer.serial,
    name: printer.name || printer.serial,
    model: printer.model || "",
    enabled: printer.enabled !== false,
    connection: { state: connection.state || "offline", reason: connection.reason || "" },
    readOnly: status.read_only === true || printer.read_only === true,
    gcodeState: job.gcode_state || "UNKNOWN",
    job: {
      name: job.subtask_name || job.name || job.file || "",
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
    hms,
    lights: status.lights || {},
    speedLevel: numberOrNull(status.speed?.level),
  };
  view.category = categoryOf(view);
  return view;
}

function trayView(tray, unitId) {
  return {
    id: tray.id,
    unit: unitId,
    // The global tray number the printer uses in tray_now: unit * 4 + slot; external 254/255.
    global: unitId === null ? tray.id : unitId * 4 + tray.id,
    type: tray.type || "",
    color: tray.color || "",
    remain: numberOrNull(tray.remain),
  };
}

function numberOrNull(value) {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/** True when the printer needs a person: a severe HMS, a print error, a failed job or link. */
export function hasError(view) {
  return (
    view.hms.some((entry) => SEVERE_HMS.has(entry.severity)) ||
    view.job.printError !== 0 ||
    view.gcodeState === "FAILED" ||
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

/** The serial and new API representation carried by a WebSocket message, or null. */
export function printerFromMessage(message) {
  if (message && typeof message === "object" && message.printer && message.printer.serial) {
    return message.printer;
  }
  return null;
}
