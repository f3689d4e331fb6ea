// LoRA and embedding pickers: read /sdapi/v1/loras and /sdapi/v1/embeddings (A1111's shapes), insert
// the tag at the prompt's caret on click, and stay hidden on a server that offers none (no route, 404,
// or empty lists: a server started without --lora-dir / --embeddings-dir).

import { optional } from "./api.js";

function insertAtCaret(textarea, text) {
  const { selectionStart: start, selectionEnd: end, value } = textarea;
  const before = value.slice(0, start);
  const sep = before && !/[\s,]$/.test(before) ? ", " : "";
  textarea.focus();
  textarea.setRangeText(sep + text, start, end, "end");
  textarea.dispatchEvent(new Event("input", { bubbles: true }));
}

function chip(label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "chip";
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

function fill(section, list, entries, prompt) {
  section.hidden = !entries.length;
  list.replaceChildren();
  for (const [label, tag] of entries) list.append(chip(label, () => insertAtCaret(prompt(), tag)));
}

/** Fill the pickers; `prompt()` gives the textarea to insert into (the prompt box). */
export async function loadNetworks(prompt) {
  const [loras, embeddings] = await Promise.all([
    optional("/sdapi/v1/loras").catch(() => null),
    optional("/sdapi/v1/embeddings").catch(() => null),
  ]);
  const loraEntries = Array.isArray(loras) ? loras.map((l) => [l.alias || l.name, `<lora:${l.name}:1>`]) : [];
  const embeddingEntries = embeddings && typeof embeddings === "object"
    ? Object.keys(embeddings.loaded ?? {}).map((name) => [name, name]) : [];
  fill(document.getElementById("loras"), document.getElementById("lora-list"), loraEntries, prompt);
  fill(document.getElementById("embeddings"), document.getElementById("embedding-list"), embeddingEntries, prompt);
  document.getElementById("networks").hidden = !(loraEntries.length || embeddingEntries.length);
}
