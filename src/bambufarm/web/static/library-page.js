// The library page (placeholder until its component lands): says so instead of showing nothing.

import { h, replaceChildren } from "./dom.js";

export class LibraryPage extends HTMLElement {
  connectedCallback() {
    replaceChildren(this, h("h1", {}, "Library"), h("p", { class: "notice" }, "This page is being built."));
  }
}
