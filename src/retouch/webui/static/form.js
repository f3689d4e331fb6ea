// The settings form, built from the server's field list (GET /api/v1/fields): one widget per field,
// grouped as in A1111; values in and out, errors shown at their field, settings kept in the browser.

import { api } from "./api.js";
import { bindAttentionKeys } from "./attention.js";

const STORE_KEY = "retouch.settings.v1";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  node.append(...children);
  return node;
}

const idOf = (name) => `f-${name.replace(/\./g, "-")}`;

async function listedChoices(route) {
  const items = await api(route);
  if (route.endsWith("/schedulers")) return items.map((s) => ({ value: s.label, label: s.label }));
  return items.map((s) => ({ value: s.name ?? s.title, label: s.name ?? s.title }));
}

export class SettingsForm {
  constructor(form, groupsBox, promptBox) {
    this.form = form;
    this.groupsBox = groupsBox;
    this.promptBox = promptBox;
    this.fields = new Map(); // name -> {spec, get, set, box, error}
    this.sizeMode = "by";
    this.scaleBy = 1;
    this.onChange = () => {};
  }

  /** Build every widget from `specs` (the server's field list). */
  async build({ groups, fields }) {
    const sections = new Map();
    for (const group of groups) {
      if (group.id === "prompt") continue;
      const details = el("details", { class: "group", id: `group-${group.id}` }, el("summary", { text: group.label }));
      details.open = group.id !== "more";
      sections.set(group.id, details);
    }
    for (const spec of fields) {
      const box = spec.group === "prompt" ? this.promptBox : sections.get(spec.group) ?? sections.get("more");
      const field = await this._widget(spec);
      box.append(field.box);
      this.fields.set(spec.name, field);
    }
    const size = sections.get("size");
    if (size) size.insertBefore(this._sizeMode(), size.querySelector('[data-field="width"]'));
    for (const details of sections.values()) if (details.children.length > 1) this.groupsBox.append(details);
    this.form.addEventListener("input", () => this._changed());
    this.form.addEventListener("change", () => this._changed());
    this.restore();
  }

  async _widget(spec) {
    const id = idOf(spec.name);
    const label = el("label", { for: id, text: spec.label });
    const error = el("p", { class: "field-error", id: `${id}-error`, role: "alert", hidden: true });
    const help = el("p", { class: "help", id: `${id}-help`, text: spec.help || "" });
    const box = el("div", { class: `field field-${spec.widget}`, "data-field": spec.name });
    const describe = { "aria-describedby": `${id}-help ${id}-error`, name: spec.name, id };
    let get;
    let set;
    if (spec.widget === "textarea") {
      const input = el("textarea", { ...describe, rows: spec.name === "prompt" ? 3 : 2, placeholder: spec.label });
      if (spec.name.endsWith("prompt")) bindAttentionKeys(input);
      box.append(label, input);
      get = () => input.value;
      set = (v) => { input.value = v ?? ""; };
    } else if (spec.widget === "select") {
      const input = el("select", describe);
      const choices = spec.choices ?? (spec.choices_from ? await listedChoices(spec.choices_from) : []);
      for (const c of choices) input.append(el("option", { value: JSON.stringify(c.value), text: c.label }));
      box.append(label, input);
      get = () => (input.value ? JSON.parse(input.value) : null);
      set = (v) => { input.value = JSON.stringify(v); if (input.selectedIndex < 0) input.selectedIndex = 0; };
    } else if (spec.widget === "radio") {
      const legend = el("legend", { text: spec.label });
      const set_ = el("fieldset", { class: "radios", id, "aria-describedby": `${id}-help ${id}-error` }, legend);
      const inputs = spec.choices.map((c, i) => {
        const input = el("input", { type: "radio", name: spec.name, id: `${id}-${i}`, value: JSON.stringify(c.value) });
        set_.append(el("label", { for: `${id}-${i}` }, input, ` ${c.label}`));
        return input;
      });
      box.append(set_);
      get = () => { const on = inputs.find((i) => i.checked); return on ? JSON.parse(on.value) : spec.default; };
      set = (v) => { for (const i of inputs) i.checked = i.value === JSON.stringify(v); };
    } else if (spec.widget === "checkbox") {
      const input = el("input", { ...describe, type: "checkbox" });
      box.append(el("label", { for: id, class: "inline" }, input, ` ${spec.label}`));
      get = () => input.checked;
      set = (v) => { input.checked = Boolean(v); };
    } else if (spec.widget === "text") {
      const input = el("input", { ...describe, type: "text", placeholder: spec.nullable ? "server default" : "" });
      box.append(label, input);
      get = () => (input.value === "" && spec.nullable ? undefined : input.value);
      set = (v) => { input.value = v ?? ""; };
    } else {
      ({ get, set } = this._numberWidget(spec, box, label, describe));
    }
    box.append(help, error);
    set(spec.default);
    return { spec, get, set, box, error };
  }

  _numberWidget(spec, box, label, describe) {
    const input = el("input", { ...describe, type: "number", inputmode: spec.type === "integer" ? "numeric" : "decimal",
      step: spec.step ?? (spec.type === "integer" ? 1 : "any"), placeholder: spec.nullable ? "server default" : "" });
    const row = el("div", { class: "number-row" });
    if (spec.widget === "slider") {
      const range = el("input", { type: "range", min: spec.ui_min, max: spec.ui_max, step: spec.step ?? "any",
        "aria-label": `${spec.label} slider`, tabindex: "-1" });
      range.addEventListener("input", () => { input.value = range.value; });
      input.addEventListener("input", () => { range.value = input.value; });
      row.append(range);
      this._ranges ??= new Map();
      this._ranges.set(spec.name, range);
    }
    row.append(input);
    if (spec.widget === "seed") {
      const dice = el("button", { type: "button", class: "icon", title: "Random seed (-1)", "aria-label": `Random ${spec.label}`, text: "Random" });
      const reuse = el("button", { type: "button", class: "icon", title: "Reuse the last seed", "aria-label": `Reuse last ${spec.label}`, text: "Last" });
      dice.addEventListener("click", () => { input.value = -1; this._changed(); });
      reuse.addEventListener("click", () => { if (this.lastSeeds?.[spec.name] !== undefined) { input.value = this.lastSeeds[spec.name]; this._changed(); } });
      row.append(dice, reuse);
    }
    box.append(label, row);
    const get = () => {
      if (input.value === "") return spec.nullable ? undefined : null; // null: the API names the field
      const n = Number(input.value);
      return Number.isFinite(n) ? n : input.value;
    };
    const set = (v) => {
      input.value = v === null || v === undefined ? "" : v;
      const range = this._ranges?.get(spec.name);
      if (range) range.value = input.value;
    };
    return { get, set };
  }

  _sizeMode() {
    const by = el("input", { type: "radio", name: "size-mode", id: "size-by", value: "by" });
    const to = el("input", { type: "radio", name: "size-mode", id: "size-to", value: "to" });
    const scale = el("input", { type: "number", id: "scale-by", min: 0.05, max: 4, step: 0.05, value: 1 });
    const result = el("output", { id: "scale-result", for: "scale-by" });
    const box = el("div", { class: "field size-mode" },
      el("fieldset", { class: "radios" }, el("legend", { text: "Size" }),
        el("label", { for: "size-by" }, by, " Resize by"), el("label", { for: "size-to" }, to, " Resize to")),
      el("div", { class: "number-row scale-row" }, el("label", { for: "scale-by", text: "Scale" }), scale, result));
    this._size = { by, to, scale, result, box };
    return box;
  }

  /** Show the size the job will have; `input` is the current input image ({width, height}) or null. */
  updateSize(input) {
    if (!this._size) return;
    const { by, to, scale, result } = this._size;
    by.checked = this.sizeMode === "by";
    to.checked = this.sizeMode === "to";
    this.sizeMode = by.checked ? "by" : "to";
    this.scaleBy = Number(scale.value) || 1;
    for (const name of ["width", "height"]) this.fields.get(name)?.box.classList.toggle("dimmed", this.sizeMode === "by");
    scale.closest(".scale-row").hidden = this.sizeMode !== "by";
    const size = this.scaledSize(input);
    result.textContent = size ? `→ ${size.width} × ${size.height}` : "";
    this.input = input;
  }

  scaledSize(input) {
    if (!input || this.sizeMode !== "by") return null;
    return { width: Math.trunc(input.width * this.scaleBy), height: Math.trunc(input.height * this.scaleBy) };
  }

  _changed() {
    if (this._size) {
      this.sizeMode = this._size.by.checked ? "by" : "to";
      this.updateSize(this.input);
    }
    this.save();
    this.onChange();
  }

  /** The request fields: override_settings.X names nested, "Resize by" applied to width/height. */
  values() {
    const body = {};
    for (const [name, field] of this.fields) {
      const value = field.get();
      if (value === undefined) continue;
      const [top, option] = name.split(".", 2);
      if (option) (body[top] ??= {})[option] = value;
      else body[top] = value;
    }
    const scaled = this.scaledSize(this.input);
    if (scaled) Object.assign(body, scaled);
    return body;
  }

  set(name, value) {
    this.fields.get(name)?.set(value);
  }

  save() {
    const raw = {};
    for (const [name, field] of this.fields) raw[name] = field.get();
    raw["ui.size_mode"] = this.sizeMode;
    raw["ui.scale_by"] = this.scaleBy;
    try { localStorage.setItem(STORE_KEY, JSON.stringify(raw)); } catch { /* private mode: not kept */ }
  }

  restore() {
    let raw = {};
    try { raw = JSON.parse(localStorage.getItem(STORE_KEY) || "{}"); } catch { raw = {}; }
    for (const [name, value] of Object.entries(raw)) if (value !== null) this.fields.get(name)?.set(value);
    if (raw["ui.size_mode"]) this.sizeMode = raw["ui.size_mode"];
    if (this._size && raw["ui.scale_by"]) this._size.scale.value = raw["ui.scale_by"];
    this.updateSize(this.input ?? null);
  }

  /** Apply a parsed infotext (POST /sdapi/v1/png-info "parameters"); returns the field names set. */
  applyInfotext(params) {
    const done = [];
    for (const [name, field] of this.fields) {
      const key = field.spec.infotext;
      if (!key || !(key in params)) continue;
      const value = fromInfotext(field.spec, String(params[key]));
      if (value === undefined) continue;
      field.set(value);
      done.push(name);
    }
    if (done.includes("width") || done.includes("height")) this.sizeMode = "to";
    this.updateSize(this.input);
    this.save();
    return done;
  }

  clearErrors() {
    for (const field of this.fields.values()) {
      field.error.hidden = true;
      field.error.textContent = "";
      field.box.classList.remove("invalid");
    }
  }

  /** Show an API error sentence at the field(s) it names; returns the fields it went to. */
  showError(detail) {
    const names = [...this.fields.keys()].sort((a, b) => b.length - a.length);
    const found = new Map();
    let last = null;
    for (const part of detail.split(/;\s+/)) {
      const name = names.find((n) => new RegExp(`^(body\\.)?${n.replace(/\./g, "\\.")}(\\b|$)`).test(part));
      if (name) { last = name; found.set(name, [...(found.get(name) ?? []), part]); }
      else if (last) found.get(last).push(part);
    }
    for (const [name, parts] of found) {
      const field = this.fields.get(name);
      field.error.textContent = parts.join("; ");
      field.error.hidden = false;
      field.box.classList.add("invalid");
      const details = field.box.closest("details");
      if (details) details.open = true;
    }
    if (found.size) {
      const target = document.getElementById(idOf([...found.keys()][0]));
      (target?.tagName === "FIELDSET" ? target.querySelector("input") : target)?.focus();
    }
    return [...found.keys()];
  }
}

function fromInfotext(spec, text) {
  if (spec.choices) {
    const c = spec.choices.find((x) => x.label.toLowerCase() === text.toLowerCase() || String(x.value) === text);
    return c ? c.value : undefined;
  }
  if (spec.type === "integer") return /^[+-]?\d+$/.test(text.trim()) ? parseInt(text, 10) : undefined;
  if (spec.type === "number") return Number.isFinite(Number(text)) ? Number(text) : undefined;
  if (spec.type === "boolean") return text.toLowerCase() === "true";
  return text;
}
