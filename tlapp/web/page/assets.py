"""The page's own theme, style sheet and script, passed to Gradio at launch."""

import gradio as gr


def theme() -> gr.themes.Base:
    """Gradio's Soft theme with text dark enough to read: its greys and light indigo on white
    or pale indigo fall short of WCAG AA contrast (4.5:1), which axe-core reports."""
    return gr.themes.Soft().set(
        body_text_color_subdued="*neutral_600",
        input_placeholder_color="*neutral_500",
        block_label_text_color="*primary_700",
        block_title_text_color="*primary_700",
        color_accent="*primary_700",
        button_primary_background_fill="*primary_600",
        button_primary_background_fill_hover="*primary_700",
        checkbox_label_background_fill_selected="*primary_600",
    )


CSS = """
#intro h1 { font-size: 1.6em; margin-bottom: 0.1em; }
#intro p { margin-top: 0; }
.tl-step h2 { margin: 0.1em 0 0.2em; font-size: 1.25em; }
#status h3 { margin: 0.3em 0 0.1em; font-size: 1.1em; }
#status p, #metrics-summary p, .tl-explain p { margin: 0.25em 0; }
abbr[title] { text-decoration: underline dotted; cursor: help; }
/* Gradio's "add more files" icon sits inside the drop zone's own button (nested controls,
   which screen readers cannot reach); dropping again does the same. */
button[aria-label="common.upload"] { display: none; }
/* The status grows with its text; Gradio's Markdown block would scroll it instead, a region
   a keyboard cannot reach. */
#status { overflow: visible !important; }
.tl-muted { color: var(--body-text-color-subdued); }
a.tl-download { display: block; text-align: center; padding: var(--size-2) var(--size-4);
  border: 1px solid var(--button-secondary-border-color); border-radius: var(--button-large-radius);
  background: var(--button-secondary-background-fill); color: var(--button-secondary-text-color);
  font-weight: var(--button-large-text-weight); text-decoration: none; }
a.tl-download:hover { background: var(--button-secondary-background-fill-hover); }
.tl-cm { overflow-x: auto; }
.tl-cm table { border-collapse: collapse; font-size: 0.9em; margin: 0 auto; }
.tl-cm caption { caption-side: bottom; color: var(--body-text-color-subdued); padding-top: 6px; }
.tl-cm th, .tl-cm td { border: 1px solid var(--border-color-primary); padding: 4px 8px;
                       text-align: center; min-width: 2.2em; }
.tl-cm th.tl-true { text-align: right; }
.tl-cm td[data-cell] { cursor: pointer; }
.tl-cal table { border-collapse: collapse; width: 100%; font-size: 0.9em; }
.tl-cal th, .tl-cal td { padding: 3px 6px; border-bottom: 1px solid var(--border-color-primary); }
.tl-cal td:nth-child(2) { width: 45%; }
.tl-bar { height: 7px; border-radius: 3px; margin: 2px 0; }
.tl-said { background: #9ca3af; }
.tl-right { background: #2563eb; }
.tl-cm td[data-cell]:hover { outline: 2px solid var(--color-accent); }
/* A model's description runs past the box: say so with an ellipsis, not a cut letter. */
#model input { text-overflow: ellipsis; margin-right: 0.4em; }
.tl-class-card { gap: var(--spacing-md); }
.tl-class-card .tl-card-title p { margin: 0; font-size: 1.05em; }
"""


# Uploads keep only base names, so the class folders (the labels) would be lost. This script
# records each file's path inside the chosen folder in the hidden #upload-paths box before the
# upload starts: from webkitRelativePath when the folder is picked, and by walking the dropped
# directory entries when it is dropped (Gradio's own drop handler sees only top-level files).
PAGE_JS = """
<script>
(() => {
  const describe = (file, path) =>
    ({path: path || file.webkitRelativePath || file.name, size: file.size});
  function report(list) {
    const box = document.querySelector("#upload-paths textarea, #upload-paths input");
    if (!box) return;
    box.value = JSON.stringify(list);
    box.dispatchEvent(new Event("input", {bubbles: true}));
  }
  document.addEventListener("change", (event) => {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || input.type !== "file") return;
    if (!input.closest("#upload")) return;
    if (input.dataset.tlappFed) { delete input.dataset.tlappFed; return; }
    report(Array.from(input.files || []).map((f) => describe(f)));
  }, true);
  const fileOf = (entry) => new Promise((ok, fail) => entry.file(ok, fail));
  const batchOf = (reader) => new Promise((ok, fail) => reader.readEntries(ok, fail));
  async function walk(entry, prefix, out) {
    if (entry.isFile) { out.push([await fileOf(entry), prefix + entry.name]); return; }
    const reader = entry.createReader();
    for (let batch = await batchOf(reader); batch.length; batch = await batchOf(reader)) {
      for (const child of batch) await walk(child, prefix + entry.name + "/", out);
    }
  }
  // A click on a confusion-matrix cell asks for its images (a fresh value on every click).
  document.addEventListener("click", (event) => {
    const cell = event.target instanceof Element && event.target.closest("#confusion-matrix td[data-cell]");
    const box = document.querySelector("#cm-cell textarea, #cm-cell input");
    if (!cell || !box) return;
    box.value = `${cell.dataset.cell},${Date.now()}`;
    box.dispatchEvent(new Event("input", {bubbles: true}));
  });
  document.addEventListener("drop", async (event) => {
    const zone = event.target instanceof Element && event.target.closest("#upload");
    if (!zone || !event.dataTransfer) return;
    const entries = Array.from(event.dataTransfer.items || [])
      .map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry()).filter(Boolean);
    if (!entries.some((entry) => entry.isDirectory)) {
      report(Array.from(event.dataTransfer.files).map((f) => describe(f)));
      return;
    }
    event.preventDefault();
    event.stopPropagation();
    const found = [];
    for (const entry of entries) await walk(entry, "", found);
    report(found.map(([file, path]) => describe(file, path)));
    const input = zone.querySelector('input[type="file"]');
    const transfer = new DataTransfer();
    found.forEach(([file]) => transfer.items.add(file));
    input.files = transfer.files;
    input.dataset.tlappFed = "1";
    input.dispatchEvent(new Event("change", {bubbles: true}));
  }, true);
})();
</script>
"""
