// <printer-detail serial="...">: one printer — status, temperatures with the last hour's
// chart, camera, controls (G-code for admins), AMS trays, HMS messages and their history, the
// files on the printer and its recent prints, live over the WebSocket. The chart, camera,
// files and history lists are components of their own modules; this page lays them out and
// tells them what the WebSocket said.

import { api, goToLogin, handleSessionProblem } from "./api.js";
import { h, replaceChildren, setText } from "./dom.js";
import { degrees, duration, etaClock, percent, targetDegrees, trayColour } from "./format.js";
import { LiveFeed } from "./live.js";
import { ACTION_LABELS, commandFromButton } from "./printer-actions.js";
import { showAllowed } from "./printer-card.js";
import { commandPath, hasPrintError, printErrorText, stateLabel, trayInUse, unitLabel } from "./printer-model.js";
import { applyFrame, fetchPrinter, fetchStatus, liveSubscription, LIVE_PATH, PrinterStore } from "./printer-source.js";
import { TemperatureChart } from "./temperature-chart.js";
import "./camera-view.js";
import "./printer-files.js";
import "./printer-history.js";

const HMS_EVENTS = new Set(["hms_raised", "hms_cleared"]);
const PRINT_EVENTS = new Set(["print_started", "print_finished", "print_failed"]);
// A G-code line as the API takes it (protocol.commands.GCODE_LINE_MAX).
const GCODE_MAX = 4096;

const SPEEDS = [
  [1, "Silent"],
  [2, "Standard"],
  [3, "Sport"],
  [4, "Ludicrous"],
];
// Bambu's bed and nozzle limits (°C); the printer refuses more, this only guides the input.
const LIMITS = { nozzle: 300, bed: 120 };

export class PrinterDetail extends HTMLElement {
  connectedCallback() {
    if (this.serial) return;
    this.serial = this.getAttribute("serial") || "";
    const role = document.body.dataset.role;
    this.canControl = role === "operator" || role === "admin";
    this.isAdmin = role === "admin";
    this.store = new PrinterStore();
    this.build();
    this.feed = new LiveFeed(LIVE_PATH, () => liveSubscription(this.serial));
    this.opened = false;
    this.feed.addEventListener("state", (event) => {
      if (event.detail === "open" && this.opened) this.load();
      if (event.detail === "open") this.opened = true;
    });
    this.feed.addEventListener("message", (event) => {
      this.noticeEvents(event.detail);
      applyFrame(this.store, event.detail, {
        changed: (view) => view.serial === this.serial && this.show(view),
        // The status came before the printer itself finished loading; load() shows both.
        unknown: () => {},
        removed: (serial) => serial === this.serial && this.gone(),
      });
    });
    this.feed.addEventListener("auth", () => goToLogin());
    // The socket opens once the page holds the printers, so its snapshots land on known ones.
    this.load().finally(() => this.isConnected && this.feed.start());
  }

  disconnectedCallback() {
    this.feed?.stop();
  }

  /** Reload the histories an event of this printer changed. */
  noticeEvents(frame) {
    if (frame.type !== "updates") return;
    for (const event of frame.events || []) {
      if (event.serial !== this.serial) continue;
      if (HMS_EVENTS.has(event.kind)) this.hmsHistory.refresh();
      if (PRINT_EVENTS.has(event.kind)) this.prints.refresh();
    }
  }

  async loadTemperatures() {
    try {
      this.chart.setHistory(await api(`/api/v1/printers/${encodeURIComponent(this.serial)}/temperatures`));
    } catch (err) {
      if (!handleSessionProblem(err)) this.chart.setProblem(`The last hour could not be loaded: ${err.message}`);
    }
  }

  build() {
    this.heading = h("h1", {}, this.serial);
    this.pill = h("span", { class: "pill" });
    this.subtitle = h("span", { class: "card-model" });
    this.badges = h("div", { class: "badges" });
    this.message = h("div", { class: "notice notice-error", role: "alert", hidden: true });
    this.facts = h("dl", { class: "facts" });
    this.fill = h("div", { class: "progress-fill" });
    this.bar = h("div", { class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-label": "Print progress" }, this.fill);
    this.temps = h("dl", { class: "temps" });
    this.ams = h("div", {});
    this.hms = h("div", {});
    this.chart = new TemperatureChart();
    this.camera = h("camera-view", { serial: this.serial });
    this.hmsHistory = h("hms-history", { serial: this.serial });
    this.prints = h("recent-prints", { serial: this.serial });
    const panel = (id, title, ...content) =>
      h("section", { class: `panel panel-${id}`, "aria-labelledby": `${id}-title` }, h("h2", { id: `${id}-title` }, title), content);
    const panels = [
      panel("status", "Status", this.bar, this.facts),
      panel("temps", "Temperatures", this.temps, h("h3", { class: "panel-sub" }, "Last hour"), this.chart),
      panel("camera", "Camera", this.camera),
    ];
    if (this.canControl) panels.push(this.buildControls());
    panels.push(
      panel("ams", "Filament", this.ams),
      panel("hms", "Health messages (HMS)", this.hms, h("h3", { class: "panel-sub" }, "History"), this.hmsHistory),
      panel("files", "Files on the printer", h("printer-files", { serial: this.serial })),
      panel("prints", "Recent prints", this.prints),
    );
    replaceChildren(
      this,
      h("p", {}, h("a", { href: "/" }, "← Fleet")),
      h("div", { class: "detail-head" }, this.heading, this.pill, this.subtitle),
      this.badges,
      this.message,
      h("div", { class: "detail-grid" }, panels),
    );
  }

  buildControls() {
    this.actionError = h("p", { class: "action-error", role: "status", hidden: true });
    this.jobButtons = {};
    const jobRow = h("div", { class: "row", role: "group", "aria-label": "Print" });
    for (const command of ["pause", "resume", "stop"]) {
      const button = h(
        "button",
        { type: "button", class: command === "stop" ? "button button-danger" : "button", "data-action": command },
        ACTION_LABELS[command],
      );
      button.addEventListener("click", () => commandFromButton(button, this.view, command, this.actionError));
      this.jobButtons[command] = button;
      jobRow.append(button);
    }
    this.lightButton = h("button", { type: "button", class: "button", "aria-pressed": "false", "data-action": "light" }, "Chamber light");
    this.lightButton.addEventListener("click", () => {
      const on = this.lightButton.getAttribute("aria-pressed") !== "true";
      this.send("light", { node: "chamber_light", on });
    });
    this.speedSelect = h("select", { id: "detail-speed" }, SPEEDS.map(([level, label]) => h("option", { value: String(level) }, label)));
    const speedButton = h("button", { type: "button", class: "button" }, "Set speed");
    speedButton.addEventListener("click", () => this.send("speed", { level: Number(this.speedSelect.value) }));
    const tempField = (heater, label) => {
      const input = h("input", { id: `detail-${heater}`, type: "number", min: "0", max: String(LIMITS[heater]), step: "1", inputmode: "numeric" });
      const button = h("button", { type: "button", class: "button", "aria-label": `Set ${label.toLowerCase()} target` }, "Set");
      button.addEventListener("click", () => {
        const target = Number.parseInt(input.value, 10);
        if (!Number.isFinite(target) || target < 0 || target > LIMITS[heater]) {
          this.showActionError(`${label}: enter 0–${LIMITS[heater]} °C.`);
          input.focus();
          return;
        }
        this.send("temperature", { heater, target });
      });
      return h("div", { class: "row" }, h("div", { class: "field" }, h("label", { for: `detail-${heater}` }, `${label} target °C`), input), button);
    };
    return h(
      "section",
      { class: "panel", "aria-labelledby": "controls-title" },
      h("h2", { id: "controls-title" }, "Controls"),
      h("div", { class: "controls" },
        jobRow,
        h("div", { class: "row" }, this.lightButton),
        h("div", { class: "row" }, h("div", { class: "field" }, h("label", { for: "detail-speed" }, "Print speed"), this.speedSelect), speedButton),
        tempField("nozzle", "Nozzle"),
        tempField("bed", "Bed"),
        this.isAdmin ? this.buildGcode() : null,
        this.actionError,
      ),
    );
  }

  /** Raw G-code: admins only (it runs with none of the printer's own checks). */
  buildGcode() {
    const input = h("input", { id: "detail-gcode", type: "text", maxlength: String(GCODE_MAX), autocomplete: "off", spellcheck: "false", placeholder: "M104 S0", "aria-describedby": "detail-gcode-hint" });
    const button = h("button", { type: "button", class: "button" }, "Send G-code");
    const send = () => {
      const gcode = input.value.trim();
      if (!gcode) {
        this.showActionError("G-code: type a line to send.");
        input.focus();
        return;
      }
      this.send("gcode", { gcode: `${gcode}\n` }).then((ok) => ok && (input.value = ""));
    };
    button.addEventListener("click", send);
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") send();
    });
    return h(
      "div",
      { class: "row" },
      h(
        "div",
        { class: "field field-wide" },
        h("label", { for: "detail-gcode" }, "G-code line"),
        input,
        h("span", { id: "detail-gcode-hint", class: "hint" }, "Admins only: runs on the printer without its own checks."),
      ),
      button,
    );
  }

  showActionError(text) {
    this.actionError.textContent = text;
    this.actionError.hidden = !text;
  }

  async send(command, body) {
    this.showActionError("");
    try {
      await api(commandPath(this.serial, command), { method: "POST", body });
      return true;
    } catch (err) {
      if (!handleSessionProblem(err)) this.showActionError(`${command} failed: ${err.message}`);
      return false;
    }
  }

  gone() {
    this.message.textContent = `${this.view?.name || this.serial} was removed from the farm.`;
    this.message.hidden = false;
    this.feed.stop();
  }

  async load() {
    try {
      const [info, status] = await Promise.all([fetchPrinter(this.serial), fetchStatus(this.serial)]);
      this.store.setInfo(info);
      this.show(this.store.setStatus(status));
      this.message.hidden = true;
      // After the view: the chart's live tail needs the model (chamber sensor or not).
      await this.loadTemperatures();
    } catch (err) {
      if (handleSessionProblem(err)) return;
      this.message.textContent = err.status === 404 ? `There is no printer ${this.serial}.` : `The printer could not be loaded: ${err.message}`;
      this.message.hidden = false;
    }
  }

  show(view) {
    this.view = view;
    document.title = `${view.name} · bambufarm`;
    setText(this.heading, view.name);
    setText(this.pill, stateLabel(view));
    this.pill.className = `pill pill-${view.category}`;
    setText(this.subtitle, `${view.model} · ${view.serial}`);
    replaceChildren(
      this.badges,
      view.readOnly ? h("span", { class: "badge badge-readonly" }, "Read-only: Developer Mode is off, commands are refused") : null,
    );

    const job = view.job;
    const width = `${Math.max(0, Math.min(100, job.progress ?? 0))}%`;
    if (this.fill.style.width !== width) this.fill.style.width = width;
    this.bar.setAttribute("aria-valuenow", String(job.progress ?? 0));
    const active = view.category === "printing" || view.category === "paused";
    const rows = [
      ["connection", "Connection", view.connection.reason ? `${view.connection.state} — ${view.connection.reason}` : view.connection.state],
      ["state", "Printer state", view.gcodeState],
      ["error", "Print error", hasPrintError(view) ? printErrorText(view.job.printError) : "None"],
      ["job", "Job", job.name || "No job"],
      ["progress", "Progress", percent(job.progress) || "—"],
      ["layer", "Layer", job.layer !== null && job.totalLayers ? `${job.layer} of ${job.totalLayers}` : "—"],
      ["remaining", "Time left", active ? duration(job.remainingMinutes) || "—" : "—"],
      ["eta", "Finishes at", view.category === "printing" ? etaClock(job.remainingMinutes) || "—" : "—"],
    ];
    replaceChildren(this.facts, rows.map(([key, label, value]) => [h("dt", {}, label), h("dd", { "data-field": key }, value)]));

    const t = view.temps;
    const nozzles =
      t.extruders.length > 1
        ? t.extruders.map((e) => [e.id === 0 ? "Right nozzle" : "Left nozzle", e.temp, e.target])
        : [["Nozzle", t.nozzle, t.nozzleTarget]];
    replaceChildren(
      this.temps,
      [...nozzles, ["Bed", t.bed, t.bedTarget], ["Chamber", view.chamberSensor ? t.chamber : null, view.chamberSensor ? t.chamberTarget : null]].map(
        ([label, value, target]) => h("div", {}, h("dt", {}, label), h("dd", {}, degrees(value), h("span", { class: "target" }, targetDegrees(target)))),
      ),
    );

    this.showAms(view);
    this.showHms(view);
    this.chart.addReading(view);
    this.camera.setPrinterName?.(view.name);

    if (this.canControl) {
      showAllowed(this.jobButtons, view);
      const light = view.lights.chamber_light;
      this.lightButton.setAttribute("aria-pressed", String(light === "on"));
      setText(this.lightButton, light === "on" ? "Chamber light: on" : "Chamber light: off");
      if (view.speedLevel && document.activeElement !== this.speedSelect) this.speedSelect.value = String(view.speedLevel);
    }
  }

  showAms(view) {
    const table = (trays) =>
      h(
        "table",
        { class: "tray-table" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Slot"), h("th", { scope: "col" }, "Colour"), h("th", { scope: "col" }, "Material"), h("th", { scope: "col" }, "Left"))),
        h(
          "tbody",
          {},
          trays.map((tray) => {
            const colour = tray.type ? trayColour(tray.color) : null;
            const swatch = h("span", { class: colour ? "swatch" : "swatch swatch-empty", role: "img", "aria-label": colour ? `colour ${colour}` : "no spool" });
            if (colour) swatch.style.backgroundColor = colour;
            const active = trayInUse(tray, view.ams.trayNow);
            return h(
              "tr",
              { "data-active": String(active) },
              h("td", {}, tray.unit === null ? "External" : `${tray.id + 1}${active ? " (in use)" : ""}`),
              h("td", {}, swatch),
              h("td", {}, tray.type || "Empty"),
              h("td", {}, tray.type ? percent(tray.remain) || "—" : "—"),
            );
          }),
        ),
      );
    const blocks = view.ams.units.map((unit) =>
      h(
        "div",
        { class: "ams-unit" },
        h("h3", {}, `${unitLabel(unit.id)}${unit.humidity !== null ? ` · humidity level ${unit.humidity}` : ""}${unit.temp !== null ? ` · ${degrees(unit.temp)}` : ""}`),
        table(unit.trays),
      ),
    );
    if (view.ams.external.length) blocks.push(h("div", { class: "ams-unit" }, h("h3", {}, "External spool"), table(view.ams.external)));
    replaceChildren(this.ams, blocks.length ? blocks : h("p", { class: "card-model" }, "No AMS and no external spool reported."));
  }

  showHms(view) {
    if (view.hms.length === 0) {
      replaceChildren(this.hms, h("p", { class: "card-model" }, "No active messages."));
      return;
    }
    replaceChildren(
      this.hms,
      h(
        "ul",
        { class: "hms-list" },
        view.hms.map((entry) =>
          h(
            "li",
            { class: `badge-hms-${entry.severity}` },
            h("strong", {}, `${entry.severity[0].toUpperCase()}${entry.severity.slice(1)}`),
            h("span", {}, entry.text || "Unknown HMS code"),
            h("code", {}, entry.code),
            entry.url && /^https:\/\//.test(entry.url) ? h("a", { href: entry.url, rel: "noreferrer", target: "_blank" }, "What to do") : null,
          ),
        ),
      ),
    );
  }
}
