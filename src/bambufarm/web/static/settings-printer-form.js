// The printer form of the settings page, for adding (name, address, serial, access code,
// model, optional ports) and for editing (the same less the serial; the access code is
// write-only: never shown, blank keeps it). The server tests the connection before it saves
// and answers with the reason when the test fails; the form shows that reason as it came.
// An access code lives only in its password field and is wiped once the request is sent.

import { api, ApiProblem, handleSessionProblem } from "./api.js";
import { h } from "./dom.js";

// The model table's names (protocol/models.py); the server accepts a name or a code and
// has the last word. Empty: the printer names its model during the connection test.
const MODELS = ["X1C", "X1", "X1E", "P1P", "P1S", "P2S", "A1 mini", "A1", "A2L", "H2D", "H2D Pro", "H2S", "H2C", "X2D"];
const PORTS = [
  ["mqtt_port", "MQTT port", "8883"],
  ["ftps_port", "FTPS port", "990"],
  ["camera_port", "Camera port", "model default"],
];

let forms = 0;

/** The problem of an API answer as one sentence a person can act on. */
export function problemText(err) {
  if (!(err instanceof ApiProblem)) return "The request failed; try again.";
  if (err.status === 0) return err.detail;
  return err.title && err.detail ? `${err.title}: ${err.detail}` : err.detail || err.title;
}

function field(id, label, control, hint) {
  if (hint) control.setAttribute("aria-describedby", `${id}-hint`);
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    control,
    hint ? h("span", { class: "hint", id: `${id}-hint` }, hint) : null,
  );
}

/**
 * A printer form. `mode` is "add" or "edit"; `printer` (the API's printer) fills an edit form.
 * Returns { form, fill(values), body(), setBusy(busy), wipe(), focusFirst() }.
 */
export function printerForm({ mode, printer = null, submitLabel }) {
  forms += 1;
  const id = (name) => `pf${forms}-${name}`;
  const editing = mode === "edit";
  const inputs = {
    name: h("input", { id: id("name"), name: "name", maxlength: "64", autocomplete: "off", required: editing }),
    host: h("input", { id: id("host"), name: "host", required: true, autocomplete: "off", spellcheck: "false", inputmode: "url" }),
    serial: editing ? null : h("input", { id: id("serial"), name: "serial", required: true, maxlength: "32", autocomplete: "off", spellcheck: "false", pattern: "[A-Za-z0-9]{1,32}" }),
    access_code: h("input", {
      id: id("access_code"),
      name: "access_code",
      type: "password",
      // "new-password" keeps browsers from filling in the signed-in user's password here.
      autocomplete: "new-password",
      required: !editing,
      maxlength: "64",
      spellcheck: "false",
      placeholder: editing ? "unchanged" : "",
    }),
    model: h(
      "select",
      { id: id("model"), name: "model" },
      editing ? null : h("option", { value: "" }, "Ask the printer"),
      MODELS.map((name) => h("option", { value: name }, name)),
    ),
  };
  const ports = {};
  for (const [name, label, placeholder] of PORTS) {
    ports[name] = h("input", { id: id(name), name, type: "number", min: "1", max: "65535", inputmode: "numeric", placeholder });
  }
  const skipTest = h("input", { id: id("skip-test"), type: "checkbox" });
  const submit = h("button", { type: "submit", class: "button button-primary" }, submitLabel);
  const form = h(
    "form",
    { class: "printer-form", novalidate: true },
    h(
      "div",
      { class: "form-grid" },
      field(id("name"), "Name", inputs.name, editing ? null : "Optional: the printer's own name by default."),
      field(id("host"), "IP address or host name", inputs.host),
      editing ? null : field(id("serial"), "Serial number", inputs.serial, "On the printer's screen or sticker."),
      field(
        id("access_code"),
        "LAN access code",
        inputs.access_code,
        editing ? "Leave blank to keep the current code." : "Settings → Network on the printer's screen.",
      ),
      field(id("model"), "Model", inputs.model),
    ),
    h(
      "details",
      { class: "ports" },
      h("summary", {}, "Ports (optional)"),
      h("div", { class: "form-grid" }, Object.entries(ports).map(([name, input]) => field(id(name), PORTS.find((p) => p[0] === name)[1], input))),
    ),
    h(
      "div",
      { class: "check" },
      skipTest,
      h("label", { for: id("skip-test") }, "Save without testing the connection (the printer is switched off)"),
    ),
    h("div", { class: "form-actions" }, submit),
  );
  if (printer) fill(printer);

  function fill(values) {
    for (const key of ["name", "host", "serial"]) {
      if (inputs[key] && values[key] !== undefined) inputs[key].value = values[key] || "";
    }
    const model = values.model_name || values.model || "";
    if (model && !MODELS.includes(model)) inputs.model.append(h("option", { value: model }, model));
    if (model) inputs.model.value = model;
    if (editing) {
      for (const name of Object.keys(ports)) {
        const value = values[name];
        ports[name].value = value === null || value === undefined ? "" : String(value);
      }
    }
  }

  /** The request body: every field for "add", only what changed for "edit"; or a problem. */
  function body() {
    const host = inputs.host.value.trim();
    if (!host) return { problem: "Give the printer's IP address or host name.", focus: inputs.host };
    const out = {};
    if (!editing) {
      const serial = inputs.serial.value.trim();
      if (!/^[A-Za-z0-9]{1,32}$/.test(serial)) return { problem: "The serial number is 1 to 32 letters and digits.", focus: inputs.serial };
      if (!inputs.access_code.value) return { problem: "Give the printer's LAN access code.", focus: inputs.access_code };
      out.serial = serial;
      out.host = host;
      if (inputs.name.value.trim()) out.name = inputs.name.value.trim();
      if (inputs.model.value) out.model = inputs.model.value;
    } else {
      const name = inputs.name.value.trim();
      if (!name) return { problem: "The printer needs a name.", focus: inputs.name };
      if (name !== printer.name) out.name = name;
      if (host !== printer.host) out.host = host;
      if (inputs.model.value && inputs.model.value !== (printer.model_name || printer.model)) out.model = inputs.model.value;
    }
    if (inputs.access_code.value) out.access_code = inputs.access_code.value;
    for (const [name, input] of Object.entries(ports)) {
      const text = input.value.trim();
      const value = text === "" ? null : Number(text);
      if (value !== null && !(Number.isInteger(value) && value >= 1 && value <= 65535)) {
        return { problem: "A port is a whole number from 1 to 65535.", focus: input };
      }
      if (!editing && value !== null) out[name] = value;
      // Blank on an edit puts the port back to its default (the API's null).
      if (editing && value !== (printer[name] ?? null)) out[name] = value;
    }
    return { body: out, test: !skipTest.checked };
  }

  return {
    form,
    fill,
    body,
    setBusy(busy) {
      submit.disabled = busy;
      form.setAttribute("aria-busy", String(busy));
    },
    wipe() {
      inputs.access_code.value = "";
    },
    reset() {
      form.reset();
    },
    focus(name) {
      (inputs[name] || inputs.name).focus();
    },
  };
}

/**
 * The edit dialog of `printer` (modal, Escape cancels). Resolves to the updated printer, or
 * null when nothing was saved. Admins may also switch the plate's auto-clear here.
 */
export function editPrinterDialog(printer) {
  return new Promise((resolve) => {
    const opener = document.activeElement;
    const titleId = `edit-title-${forms + 1}`;
    const editor = printerForm({ mode: "edit", printer, submitLabel: "Save" });
    const message = h("p", { class: "notice notice-error", role: "alert", hidden: true });
    const status = h("p", { class: "form-status", role: "status", "aria-live": "polite" });
    const autoClear = h("input", { id: `${titleId}-auto-clear`, type: "checkbox", disabled: true });
    const autoClearRow = h(
      "div",
      { class: "check" },
      autoClear,
      h("label", { for: `${titleId}-auto-clear` }, "Auto-clear the plate: the printer's ejection routine clears it after a finished print"),
    );
    const cancel = h("button", { type: "button", class: "button" }, "Cancel");
    editor.form.querySelector(".form-actions").prepend(cancel);
    editor.form.querySelector(".ports").after(autoClearRow);
    editor.form.prepend(message);
    editor.form.append(status);
    const dialog = h(
      "dialog",
      { class: "settings-dialog", "aria-labelledby": titleId },
      h("h2", { id: titleId }, `Edit ${printer.name || printer.serial}`),
      h("p", { class: "hint" }, `Serial ${printer.serial}`),
      editor.form,
    );
    let saved = null;
    let autoClearWas = null;
    const plateUrl = `/api/v1/printers/${encodeURIComponent(printer.serial)}/plate`;
    api(plateUrl)
      .then((plate) => {
        autoClearWas = plate.auto_clear;
        autoClear.checked = plate.auto_clear;
        autoClear.disabled = false;
      })
      .catch((err) => {
        if (handleSessionProblem(err)) return;
        autoClearRow.append(h("span", { class: "hint" }, ` (unavailable: ${problemText(err)})`));
      });
    cancel.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      editor.wipe();
      dialog.remove();
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
      resolve(saved);
    });
    editor.form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const request = editor.body();
      if (request.problem) {
        message.textContent = request.problem;
        message.hidden = false;
        request.focus.focus();
        return;
      }
      const autoClearChanged = autoClearWas !== null && autoClear.checked !== autoClearWas;
      if (Object.keys(request.body).length === 0 && !autoClearChanged) {
        dialog.close();
        return;
      }
      editor.setBusy(true);
      message.hidden = true;
      const linkChanged = ["host", "access_code", "mqtt_port", "ftps_port"].some((k) => k in request.body);
      status.textContent = linkChanged && request.test ? "Testing the connection…" : "Saving…";
      try {
        if (Object.keys(request.body).length > 0) {
          const query = request.test ? "" : "?test=false";
          saved = await api(`/api/v1/printers/${encodeURIComponent(printer.serial)}${query}`, { method: "PATCH", body: request.body });
        }
        editor.wipe();
        if (autoClearChanged) {
          await api(`${plateUrl}/auto-clear`, { method: "PUT", body: { enabled: autoClear.checked } });
          saved = saved || printer;
        }
        dialog.close();
      } catch (err) {
        editor.wipe();
        if (handleSessionProblem(err)) return;
        status.textContent = "";
        message.textContent = problemText(err);
        message.hidden = false;
        editor.setBusy(false);
      }
    });
    document.body.append(dialog);
    dialog.showModal();
    editor.focus("name");
  });
}
