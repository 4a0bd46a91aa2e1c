// <camera-view serial="...">: the printer's live camera. It asks for one frame first
// (GET .../camera/snapshot) so a camera that cannot be shown — an RTSPS model, a printer that
// is off — is explained with the server's own words instead of a broken image; then an <img>
// plays the MJPEG stream (GET .../camera). The stream stops while the tab is hidden and when
// the page is left: every open stream costs the printer CPU.

import { ApiProblem, handleSessionProblem } from "./api.js";
import { h, replaceChildren, setText } from "./dom.js";

export class CameraView extends HTMLElement {
  connectedCallback() {
    if (this.image) return;
    this.serial = this.getAttribute("serial") || "";
    const base = `/api/v1/printers/${encodeURIComponent(this.serial)}/camera`;
    this.streamUrl = base;
    this.snapshotUrl = `${base}/snapshot`;
    this.image = h("img", { class: "camera-image", alt: "Live camera", width: "640", height: "360", hidden: true });
    this.status = h("p", { class: "camera-status", role: "status", "aria-live": "polite" }, "Starting the camera…");
    this.toggle = h("button", { type: "button", class: "button" }, "Stop camera");
    this.toggle.addEventListener("click", () => (this.wanted ? this.stop("Camera stopped.") : this.start()));
    this.image.addEventListener("load", () => {
      this.image.hidden = false;
      this.dataset.state = "live";
      setText(this.status, "");
    });
    this.image.addEventListener("error", () => {
      if (!this.image.getAttribute("src")) return;
      this.stop("The camera stream ended. Start it again to retry.");
    });
    this.onVisibility = () => {
      if (document.hidden && this.wanted) this.pause();
      else if (!document.hidden && this.wanted && !this.image.getAttribute("src")) this.start();
    };
    document.addEventListener("visibilitychange", this.onVisibility);
    replaceChildren(this, h("div", { class: "camera-frame" }, this.image), h("div", { class: "row" }, this.toggle), this.status);
    this.start();
  }

  disconnectedCallback() {
    document.removeEventListener("visibilitychange", this.onVisibility);
    this.pause();
  }

  /** Name the printer in the picture's text alternative. */
  setPrinterName(name) {
    this.image.alt = `Live camera of ${name}`;
  }

  async start() {
    this.wanted = true;
    setText(this.toggle, "Stop camera");
    this.dataset.state = "starting";
    setText(this.status, "Starting the camera…");
    const attempt = (this.attempt = (this.attempt || 0) + 1);
    let response;
    try {
      response = await fetch(this.snapshotUrl, { credentials: "same-origin", headers: { Accept: "image/jpeg, application/problem+json" } });
    } catch {
      this.stop("The server cannot be reached; check the connection and start the camera again.");
      return;
    }
    if (attempt !== this.attempt || !this.wanted) return;
    if (!response.ok) {
      let body = null;
      try {
        body = await response.json();
      } catch {
        body = null;
      }
      const problem = new ApiProblem(response.status, body?.type, body?.title, body?.detail || `the server answered ${response.status}`);
      if (handleSessionProblem(problem)) return;
      this.stop(problem.detail, "unavailable");
      return;
    }
    await response.arrayBuffer();
    // The snapshot left the printer's stream open for a few seconds: the live view joins it.
    this.image.src = this.streamUrl;
  }

  pause() {
    this.attempt = (this.attempt || 0) + 1;
    // Dropping the source closes the MJPEG request, which releases the printer's stream.
    this.image.removeAttribute("src");
    this.image.hidden = true;
  }

  stop(text, state = "stopped") {
    this.wanted = false;
    this.pause();
    this.dataset.state = state;
    setText(this.toggle, "Start camera");
    setText(this.status, text);
  }
}

if (!customElements.get("camera-view")) customElements.define("camera-view", CameraView);
