// The history page (placeholder until its component lands): says so instead of showing nothing.

import { h, replaceChildren } from "./dom.js";

export class HistoryPage extends HTMLElement {
  connectedCallback() {
    replaceChildren(this, h("h1", {}, "History"), h("p", { class: "notice" }, "This page is being built."));
  }
}
