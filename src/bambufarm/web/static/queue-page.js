// The queue page (placeholder until its component lands): says so instead of showing nothing.

import { h, replaceChildren } from "./dom.js";

export class QueuePage extends HTMLElement {
  connectedCallback() {
    replaceChildren(this, h("h1", {}, "Queue"), h("p", { class: "notice" }, "This page is being built."));
  }
}
