// <library-upload>: the library's upload zone. Files dropped on it or chosen with its button
// are sent one after another as raw bodies (POST /api/v1/library/files?name=…), through
// XMLHttpRequest because fetch cannot report upload progress; each file gets a row with a
// progress bar, then either "stored" or the server's reason for refusing it (not sliced,
// corrupt, unknown model, too large). Fires "uploaded" (detail: the stored file) per success.

import { ApiProblem, csrfToken, handleSessionProblem } from "./api.js";
import { h, setText } from "./dom.js";

// The header api.js sends on unsafe requests (double-submit CSRF); XHR has to send it itself.
const CSRF_HEADER = "X-CSRF-Token";
// Only sliced projects print; the server checks the content, this only steers the picker.
const ACCEPT = ".3mf,.gcode.3mf";

/** Send one file's bytes to the library; resolves to the stored file, rejects with ApiProblem. */
export function uploadFile(file, { folder = "", onProgress = () => {} } = {}) {
  return new Promise((resolve, reject) => {
    const query = new URLSearchParams({ name: file.name });
    if (folder) query.set("folder", folder);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/v1/library/files?${query}`);
    xhr.setRequestHeader("Accept", "application/json, application/problem+json");
    // The raw body is the file; its own type (often "" or a 3MF model type) says nothing.
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader(CSRF_HEADER, csrfToken());
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    xhr.addEventListener("load", () => {
      let data = null;
      try {
        data = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        data = null;
      }
      if (xhr.status === 201 || xhr.status === 200) {
        resolve(data);
        return;
      }
      reject(
        new ApiProblem(
          xhr.status,
          data?.type,
          data?.title || xhr.statusText,
          data?.detail || `the server answered ${xhr.status}`,
        ),
      );
    });
    // A server that refuses a large file early (413) may close before the body is sent.
    xhr.addEventListener("error", () =>
      reject(new ApiProblem(0, "network", "Upload broken off", "the connection closed during the upload; check the file's size and the connection, then try again")),
    );
    xhr.addEventListener("abort", () => reject(new ApiProblem(0, "aborted", "Cancelled", "the upload was cancelled")));
    xhr.send(file);
  });
}

function sizeText(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 ** 2).toFixed(1)} MB`;
}

export class LibraryUpload extends HTMLElement {
  connectedCallback() {
    if (this.zone) return;
    this.folder = "";
    this.queue = [];
    this.busy = false;
    const inputId = "library-file-input";
    this.input = h("input", { id: inputId, type: "file", multiple: true, accept: ACCEPT, class: "visually-hidden" });
    this.input.addEventListener("change", () => {
      this.enqueue([...this.input.files]);
      this.input.value = "";
    });
    const choose = h("button", { type: "button", class: "button button-primary" }, "Choose files…");
    choose.addEventListener("click", () => this.input.click());
    this.zone = h(
      "div",
      { class: "dropzone", "data-dragging": "false" },
      h("p", { class: "dropzone-text" }, h("strong", {}, "Drop sliced .gcode.3mf files here"), " or "),
      choose,
      h("label", { for: inputId, class: "visually-hidden" }, "Upload sliced files"),
      this.input,
      h("p", { class: "dropzone-hint", id: "dropzone-hint" }, "Slice and export with Bambu Studio or Orca (File › Export › Export plate sliced file)."),
    );
    this.zone.addEventListener("dragenter", (event) => this.dragOver(event));
    this.zone.addEventListener("dragover", (event) => this.dragOver(event));
    this.zone.addEventListener("dragleave", (event) => {
      if (!this.zone.contains(event.relatedTarget)) this.zone.dataset.dragging = "false";
    });
    this.zone.addEventListener("drop", (event) => {
      event.preventDefault();
      this.zone.dataset.dragging = "false";
      this.enqueue([...(event.dataTransfer?.files || [])]);
    });
    this.list = h("ul", { class: "uploads", "aria-label": "Uploads" });
    this.append(this.zone, this.list);
  }

  dragOver(event) {
    if (![...(event.dataTransfer?.types || [])].includes("Files")) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    this.zone.dataset.dragging = "true";
  }

  /** Files go into this folder ('' the top), the one the page shows. */
  setFolder(folder) {
    this.folder = folder || "";
  }

  enqueue(files) {
    for (const file of files) {
      const row = this.row(file);
      this.list.prepend(row.item);
      this.queue.push({ file, row, folder: this.folder });
    }
    this.next();
  }

  row(file) {
    const bar = h("progress", { max: 100, value: 0, "aria-label": `Upload of ${file.name}` });
    const status = h("span", { class: "upload-status", "aria-live": "polite" }, "Waiting…");
    const dismiss = h("button", { type: "button", class: "button button-small", hidden: true, "aria-label": `Dismiss ${file.name}` }, "Dismiss");
    const item = h(
      "li",
      { class: "upload", "data-state": "waiting", "data-name": file.name },
      h("span", { class: "upload-name" }, file.name),
      h("span", { class: "upload-size" }, sizeText(file.size)),
      bar,
      status,
      dismiss,
    );
    dismiss.addEventListener("click", () => {
      const next = item.nextElementSibling || item.previousElementSibling;
      item.remove();
      if (next) next.querySelector("button:not([hidden])")?.focus();
    });
    return { item, bar, status, dismiss };
  }

  async next() {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length > 0) {
        const { file, row, folder } = this.queue.shift();
        await this.send(file, row, folder);
      }
    } finally {
      this.busy = false;
    }
  }

  async send(file, row, folder) {
    row.item.dataset.state = "uploading";
    setText(row.status, "Uploading… 0%");
    try {
      const stored = await uploadFile(file, {
        folder,
        onProgress: (loaded, total) => {
          const pct = total > 0 ? Math.floor((loaded / total) * 100) : 0;
          row.bar.value = pct;
          // The bytes are sent; the server still checks the archive before it answers.
          setText(row.status, pct >= 100 ? "Checking the file…" : `Uploading… ${pct}%`);
        },
      });
      row.bar.value = 100;
      row.item.dataset.state = "done";
      setText(row.status, "Stored in the library");
      row.dismiss.hidden = false;
      this.dispatchEvent(new CustomEvent("uploaded", { detail: stored }));
    } catch (err) {
      if (handleSessionProblem(err)) return;
      row.item.dataset.state = "refused";
      row.bar.hidden = true;
      const title = err instanceof ApiProblem && err.title ? `${err.title}: ` : "";
      setText(row.status, `Refused — ${title}${err.detail || err.message}`);
      row.status.setAttribute("role", "alert");
      row.dismiss.hidden = false;
    }
  }
}

if (!customElements.get("library-upload")) customElements.define("library-upload", LibraryUpload);
