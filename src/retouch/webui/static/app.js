// The page's entry point: wires the input/mask editor, the settings form, jobs and results together.

import { api, ApiError, connection } from "./api.js";
import { SettingsForm } from "./form.js";
import { Gallery } from "./gallery.js";
import { JobList } from "./jobs.js";
import { MaskEditor } from "./mask.js";
import { loadNetworks } from "./networks.js";

const $ = (id) => document.getElementById(id);

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function notice(text) {
  const box = $("notice");
  box.textContent = text;
  box.hidden = !text;
}

function formError(text) {
  const box = $("form-error");
  box.textContent = text;
  box.hidden = !text;
}

const editor = new MaskEditor({
  stage: $("stage"), box: $("canvas-box"), imageCanvas: $("image-canvas"), overlayCanvas: $("overlay-canvas"),
  cursor: $("brush-cursor"),
});
const form = new SettingsForm($("form"), $("groups"), $("group-prompt"));
const gallery = new Gallery($("gallery"), $("gallery-empty"), {
  onSendToInput: (src) => setInput(src, "a result"),
  onReuseSeed: (seed) => { form.set("seed", seed); form.save(); notice(`Seed set to ${seed}.`); },
});
const jobs = new JobList($("jobs"), $("queue-summary"), {
  onResult: (view) => {
    gallery.add(view);
    try {
      const info = JSON.parse(view.result.info);
      form.lastSeeds = { seed: info.seed, subseed: info.subseed };
    } catch { /* no info: nothing to reuse */ }
  },
});

async function setInput(src, what) {
  try {
    await editor.setImage(src);
    $("stage-hint").hidden = true;
    notice(`Input: ${what}.`);
  } catch (err) {
    notice(`Could not open ${what}: ${err.message}`);
  }
}

function showInput() {
  const image = editor.image;
  $("input-size").textContent = image ? `${image.width} × ${image.height} px` : "No image";
  $("mask-info").textContent = editor.painted ? "Mask: painted (inpaint)" : "Mask: none (img2img)";
  form.updateSize(image);
}

// -- the toolbar ---------------------------------------------------------------------------------
function bindTools() {
  const size = $("brush-size");
  const hardness = $("brush-hardness");
  const sync = () => {
    editor.size = Number(size.value);
    editor.hardness = Number(hardness.value);
    $("brush-size-value").textContent = size.value;
    $("brush-hardness-value").textContent = hardness.value;
  };
  size.addEventListener("input", sync);
  hardness.addEventListener("input", sync);
  sync();
  for (const radio of document.querySelectorAll('input[name="tool"]')) {
    radio.addEventListener("change", () => {
      editor.tool = radio.value;
      $("stage").dataset.tool = radio.value;
    });
  }
  $("undo").addEventListener("click", () => editor.undo());
  $("redo").addEventListener("click", () => editor.redo());
  $("clear-mask").addEventListener("click", () => editor.clear());
  $("invert-mask").addEventListener("click", () => editor.invert());
  $("show-mask").addEventListener("change", (e) => editor.setVisible(e.target.checked));
  $("mask-opacity").addEventListener("input", (e) => editor.setOpacity(Number(e.target.value)));
  $("zoom-in").addEventListener("click", () => editor.setZoom(editor.zoom * 1.25));
  $("zoom-out").addEventListener("click", () => editor.setZoom(editor.zoom * 0.8));
  $("zoom-fit").addEventListener("click", () => editor.fit());
  editor.addEventListener("zoom", () => { $("zoom-value").textContent = `${Math.round(editor.zoom * 100)}%`; });
  editor.addEventListener("change", showInput);
  $("stage").addEventListener("keydown", (e) => {
    const key = e.key.toLowerCase();
    if ((e.ctrlKey || e.metaKey) && key === "z") { e.preventDefault(); if (e.shiftKey) editor.redo(); else editor.undo(); }
    else if ((e.ctrlKey || e.metaKey) && key === "y") { e.preventDefault(); editor.redo(); }
    else if (key === "[" || key === "]") { size.value = Number(size.value) + (key === "]" ? 4 : -4); sync(); }
  });
}

// -- images in: pick, paste, drop ----------------------------------------------------------------
async function dropped(file, onStage) {
  if (!file || !file.type.startsWith("image/")) { notice("Only image files can be dropped here."); return; }
  const src = await readFile(file);
  if (!onStage) {
    try {
      const info = await api("/sdapi/v1/png-info", { method: "POST", body: { image: src } });
      if (info.info) {
        const names = form.applyInfotext(info.parameters);
        notice(`Restored ${names.length} settings from ${file.name}.`);
        return;
      }
    } catch (err) {
      notice(`Could not read ${file.name}: ${err.message}`);
      return;
    }
  }
  await setInput(src, file.name);
}

function bindInputs() {
  $("image-file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (file) await setInput(await readFile(file), file.name);
    e.target.value = "";
  });
  $("mask-file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    e.target.value = "";
    if (!file) return;
    try {
      await editor.loadMask(await readFile(file), form.values().mask_round !== false);
      notice(`Mask: ${file.name}.`);
    } catch (err) {
      notice(`Could not use ${file.name} as the mask: ${err.message}`);
    }
  });
  document.addEventListener("dragover", (e) => { e.preventDefault(); document.body.classList.add("dragging"); });
  document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    document.body.classList.remove("dragging");
    const file = e.dataTransfer?.files?.[0];
    dropped(file, $("stage").contains(e.target));
  });
  document.addEventListener("paste", (e) => {
    const file = [...(e.clipboardData?.files ?? [])].find((f) => f.type.startsWith("image/"));
    if (file) { e.preventDefault(); dropped(file, true); }
  });
}

// -- generating ----------------------------------------------------------------------------------
async function generate(event) {
  event.preventDefault();
  form.clearErrors();
  formError("");
  if (!editor.image) { formError("Open an image first (drop, paste or pick one)."); return; }
  const body = { ...form.values(), init_images: [editor.image.src] };
  const mask = editor.maskDataURL();
  if (mask) body.mask = mask;
  const label = (body.prompt || "(no prompt)").slice(0, 60);
  try {
    await jobs.submit(body, `${mask ? "inpaint" : "img2img"}: ${label}`);
  } catch (err) {
    if (!(err instanceof ApiError)) { formError(`The server cannot be reached: ${err.message}`); return; }
    form.showError(err.detail);
    formError(`${err.status}: ${err.detail}`);
  }
}

function bindForm() {
  $("form").addEventListener("submit", generate);
  $("form").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && e.target.tagName === "TEXTAREA") {
      e.preventDefault();
      $("form").requestSubmit();
    }
  });
}

function bindConnection() {
  connection.addEventListener("change", () => {
    const box = $("connection");
    box.hidden = connection.online;
    box.textContent = connection.online ? "" : "Connection to the server lost; retrying…";
    if (connection.online) notice("Connection restored.");
  });
}

async function main() {
  bindTools();
  bindInputs();
  bindForm();
  bindConnection();
  try {
    const [fields, models] = await Promise.all([api("/api/v1/fields"), api("/sdapi/v1/sd-models")]);
    await form.build(fields);
    const model = models[0];
    $("model-name").textContent = model?.model_name ?? "?";
    $("model-hash").textContent = model?.hash ? `[${model.hash}]` : "";
    $("model-name").title = model?.title ?? "";
    showInput();
    await loadNetworks(() => document.querySelector('textarea[name="prompt"]'));
    await jobs.resume();
  } catch (err) {
    formError(`The page could not load its settings: ${err.message}`);
    return;
  }
  document.body.dataset.ready = "true";
}

main();
