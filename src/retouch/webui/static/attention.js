// Ctrl+Up / Ctrl+Down: change the emphasis of the selected words, "(words:1.1)", as A1111's prompt
// boxes do. Our own code; the behaviour follows A1111's edit-attention: with nothing selected the word
// (or the bracketed group) at the caret is taken, weights move by 0.1, weight 1 drops the brackets.

const DELIMITERS = " ,.\n\t()[]{}|:";
const STEP = 0.1;

/** The bracketed "(text:weight)" group around [start, end), or null. */
function enclosingGroup(text, start, end) {
  const open = text.lastIndexOf("(", start - 1);
  if (open < 0) return null;
  const close = text.indexOf(")", end);
  if (close < 0) return null;
  const inner = text.slice(open + 1, close);
  if (inner.includes("(") || inner.includes(")")) return null;
  const match = /^(.*):(-?\d+(?:\.\d+)?)$/s.exec(inner);
  if (!match) return null;
  return { open, close, body: match[1], weight: parseFloat(match[2]) };
}

function wordAt(text, pos) {
  let start = pos;
  let end = pos;
  while (start > 0 && !DELIMITERS.includes(text[start - 1])) start--;
  while (end < text.length && !DELIMITERS.includes(text[end])) end++;
  return start < end ? { start, end } : null;
}

function formatWeight(w) {
  return String(Math.round(w * 100) / 100);
}

/**
 * The prompt after one Ctrl+Up (delta > 0) or Ctrl+Down on the selection [start, end):
 * returns {text, start, end} with the new selection (the words themselves), or null when the caret
 * is on nothing.
 */
export function editAttention(text, start, end, delta) {
  const group = enclosingGroup(text, start, end);
  if (group) {
    const weight = Math.round((group.weight + delta) * 100) / 100;
    const before = text.slice(0, group.open);
    const after = text.slice(group.close + 1);
    if (weight === 1) {
      return { text: before + group.body + after, start: before.length, end: before.length + group.body.length };
    }
    const inner = `${group.body}:${formatWeight(weight)}`;
    return { text: `${before}(${inner})${after}`, start: before.length + 1, end: before.length + 1 + group.body.length };
  }
  if (start === end) {
    const word = wordAt(text, start);
    if (!word) return null;
    ({ start, end } = word);
  }
  // Keep surrounding spaces outside the brackets.
  while (start < end && text[start] === " ") start++;
  while (end > start && text[end - 1] === " ") end--;
  if (start === end) return null;
  const words = text.slice(start, end);
  const inner = `${words}:${formatWeight(1 + delta)}`;
  return { text: `${text.slice(0, start)}(${inner})${text.slice(end)}`, start: start + 1, end: start + 1 + words.length };
}

/** Bind Ctrl+Up/Down on a textarea; the edit stays undoable with Ctrl+Z where the browser allows. */
export function bindAttentionKeys(textarea) {
  textarea.addEventListener("keydown", (event) => {
    if (!(event.ctrlKey || event.metaKey) || (event.key !== "ArrowUp" && event.key !== "ArrowDown")) return;
    const edit = editAttention(textarea.value, textarea.selectionStart, textarea.selectionEnd,
      event.key === "ArrowUp" ? STEP : -STEP);
    if (!edit) return;
    event.preventDefault();
    textarea.select();
    if (!document.execCommand || !document.execCommand("insertText", false, edit.text)) textarea.value = edit.text;
    textarea.setSelectionRange(edit.start, edit.end);
    textarea.dispatchEvent(new Event("input", { bubbles: true }));
  });
}
