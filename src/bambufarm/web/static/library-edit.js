// Rename a library file, move it to another folder or change its tags, in a native modal
// <dialog> (focus kept inside, Escape cancels). Only what changed is sent (PATCH); a refusal
// (a name taken in that folder, a tag too long) stays in the dialog with the server's detail.

import { api, handleSessionProblem } from "./api.js";
import { h } from "./dom.js";

// storage.library.MAX_NAME, and the API's limits on tags (32 of at most 64 characters).
const MAX_NAME = 255;
const MAX_TAGS = 32;

function parseTags(text) {
  const seen = new Set();
  for (const part of text.split(",")) {
    const tag = part.trim();
    if (tag) seen.add(tag);
  }
  return [...seen];
}

/** Edit `file`'s name, folder and tags; resolves to the updated file, or null if cancelled. */
export function editFile(file) {
  return new Promise((resolve) => {
    const opener = document.activeElement;
    const id = `edit-${file.id}-${Date.now().toString(36)}`;
    let result = null;
    const name = h("input", { id: `${id}-name`, value: file.name, required: true, maxlength: MAX_NAME, autocomplete: "off" });
    const folder = h("input", {
      id: `${id}-folder`,
      value: file.folder,
      maxlength: MAX_NAME,
      autocomplete: "off",
      "aria-describedby": `${id}-folder-hint`,
    });
    const tags = h("input", { id: `${id}-tags`, value: file.tags.join(", "), autocomplete: "off", "aria-describedby": `${id}-tags-hint` });
    const error = h("p", { class: "notice notice-error", role: "alert", hidden: true });
    const save = h("button", { type: "submit", class: "button button-primary" }, "Save");
    const cancel = h("button", { type: "button", class: "button" }, "Cancel");
    const form = h(
      "form",
      { class: "job-form" },
      h("div", { class: "field" }, h("label", { for: name.id }, "Name"), name),
      h(
        "div",
        { class: "field" },
        h("label", { for: folder.id }, "Folder"),
        folder,
        h("span", { class: "hint", id: `${id}-folder-hint` }, "Folders nest with “/”, e.g. customers/acme; empty is the top."),
      ),
      h(
        "div",
        { class: "field" },
        h("label", { for: tags.id }, "Tags"),
        tags,
        h("span", { class: "hint", id: `${id}-tags-hint` }, "Separated by commas."),
      ),
      error,
      h("div", { class: "dialog-actions" }, cancel, save),
    );
    const dialog = h("dialog", { class: "job-dialog", "aria-labelledby": `${id}-title` }, h("h2", { id: `${id}-title` }, `Edit ${file.name}`), form);
    cancel.addEventListener("click", () => dialog.close("cancel"));
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
      resolve(result);
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.hidden = true;
      const body = {};
      if (name.value.trim() !== file.name) body.name = name.value.trim();
      if (folder.value.trim() !== file.folder) body.folder = folder.value.trim();
      const newTags = parseTags(tags.value);
      if (newTags.length > MAX_TAGS) {
        error.textContent = `At most ${MAX_TAGS} tags.`;
        error.hidden = false;
        return;
      }
      if (newTags.join("\n") !== file.tags.join("\n")) body.tags = newTags;
      if (Object.keys(body).length === 0) {
        dialog.close("unchanged");
        return;
      }
      save.disabled = true;
      try {
        result = await api(`/api/v1/library/files/${file.id}`, { method: "PATCH", body });
        dialog.close("saved");
      } catch (err) {
        if (handleSessionProblem(err)) return;
        error.textContent = `Not saved: ${err.detail || err.message}`;
        error.hidden = false;
        save.disabled = false;
      }
    });
    document.body.append(dialog);
    dialog.showModal();
    name.focus();
  });
}
