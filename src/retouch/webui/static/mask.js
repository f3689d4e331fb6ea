// The input image and its mask: a round brush with size and hardness (soft edges keep grey levels),
// eraser, undo/redo, clear, invert, show/hide and opacity, zoom and pan, mask files (A1111's rules).
//
// The mask is an opaque grey canvas at the image's size (white = repaint). A stroke is drawn on its own
// canvas as the maximum of its dabs ("lighten"), so a soft stroke does not build up where dabs
// overlap, and is merged into the mask when the pointer is released (max for the brush, min for the
// eraser). The overlay shows the mask as a coloured layer whose alpha is the mask value.

const UNDO_LIMIT = 30;

function canvas(w, h) {
  const c = document.createElement("canvas");
  c.width = w;
  c.height = h;
  c.getContext("2d", { willReadFrequently: true });
  return c;
}

export function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the file is not an image this browser can read"));
    img.src = src;
  });
}

export class MaskEditor extends EventTarget {
  constructor({ stage, box, imageCanvas, overlayCanvas, cursor }) {
    super();
    Object.assign(this, { stage, box, imageCanvas, overlayCanvas, cursor });
    this.size = 32;
    this.hardness = 0.5;
    this.tool = "brush";
    this.opacity = 0.5;
    this.zoom = 1;
    this.image = null; // {src, width, height}
    this.undoStack = [];
    this.redoStack = [];
    this.painted = false;
    this._bindPointer();
  }

  /** Use `src` (a data: URL) as the input image; the mask is kept when the size matches. */
  async setImage(src) {
    const img = await loadImage(src);
    const { naturalWidth: w, naturalHeight: h } = img;
    const keep = this.mask && this.mask.width === w && this.mask.height === h;
    this.image = { src, width: w, height: h };
    for (const c of [this.imageCanvas, this.overlayCanvas]) { c.width = w; c.height = h; }
    this.imageCanvas.getContext("2d").drawImage(img, 0, 0);
    if (!keep) {
      this.mask = canvas(w, h);
      this._fill(this.mask, "#000");
      this.undoStack = [];
      this.redoStack = [];
    }
    this.stroke = canvas(w, h);
    this.box.hidden = false;
    this.fit();
    this.render();
    this._emit();
  }

  _fill(c, colour) {
    const ctx = c.getContext("2d");
    ctx.globalCompositeOperation = "source-over";
    ctx.fillStyle = colour;
    ctx.fillRect(0, 0, c.width, c.height);
  }

  _emit() {
    this.dispatchEvent(new Event("change"));
  }

  // -- painting ---------------------------------------------------------------------------------
  _point(event) {
    const rect = this.overlayCanvas.getBoundingClientRect();
    return {
      x: ((event.clientX - rect.left) * this.overlayCanvas.width) / rect.width,
      y: ((event.clientY - rect.top) * this.overlayCanvas.height) / rect.height,
    };
  }

  _dab(ctx, { x, y }) {
    const r = this.size / 2;
    const erase = this.tool === "eraser";
    const inner = erase ? "#000" : "#fff";
    const outer = erase ? "#fff" : "#000";
    if (this.hardness >= 1) {
      ctx.fillStyle = inner;
    } else {
      const g = ctx.createRadialGradient(x, y, r * this.hardness, x, y, r);
      g.addColorStop(0, inner);
      g.addColorStop(1, outer);
      ctx.fillStyle = g;
    }
    ctx.beginPath();
    ctx.arc(x, y, r, 0, Math.PI * 2);
    ctx.fill();
  }

  _line(from, to) {
    const ctx = this.stroke.getContext("2d");
    ctx.globalCompositeOperation = this.tool === "eraser" ? "darken" : "lighten";
    const dist = Math.hypot(to.x - from.x, to.y - from.y);
    const spacing = Math.max(1, this.size / 8);
    const n = Math.max(1, Math.ceil(dist / spacing));
    for (let i = 1; i <= n; i++) {
      this._dab(ctx, { x: from.x + ((to.x - from.x) * i) / n, y: from.y + ((to.y - from.y) * i) / n });
    }
  }

  _bindPointer() {
    const target = this.overlayCanvas;
    let last = null;
    let pan = null;
    target.addEventListener("pointerdown", (event) => {
      if (!this.image) return;
      target.setPointerCapture(event.pointerId);
      if (this.tool === "pan" || event.button === 1) {
        pan = { x: event.clientX, y: event.clientY, left: this.stage.scrollLeft, top: this.stage.scrollTop };
        return;
      }
      if (event.button !== 0) return;
      this._fill(this.stroke, this.tool === "eraser" ? "#fff" : "#000");
      last = this._point(event);
      this._dab(this.stroke.getContext("2d"), last);
      this._frame();
      event.preventDefault();
    });
    target.addEventListener("pointermove", (event) => {
      this._cursor(event);
      if (pan) {
        this.stage.scrollLeft = pan.left - (event.clientX - pan.x);
        this.stage.scrollTop = pan.top - (event.clientY - pan.y);
        return;
      }
      if (!last) return;
      const p = this._point(event);
      this._line(last, p);
      last = p;
      this._frame();
    });
    const end = () => {
      pan = null;
      if (!last) return;
      last = null;
      this._commit();
    };
    target.addEventListener("pointerleave", () => { if (this.cursor) this.cursor.hidden = true; });
    target.addEventListener("pointerup", end);
    target.addEventListener("pointercancel", end);
    this.stage.addEventListener("wheel", (event) => {
      if (!this.image || !(event.ctrlKey || event.metaKey)) return;
      event.preventDefault();
      this.setZoom(this.zoom * (event.deltaY < 0 ? 1.25 : 0.8));
    }, { passive: false });
  }

  /** The brush outline under the pointer, at the brush's size on screen. */
  _cursor(event) {
    if (!this.cursor) return;
    const rect = this.overlayCanvas.getBoundingClientRect();
    const d = (this.size * rect.width) / this.overlayCanvas.width;
    this.cursor.hidden = this.tool === "pan";
    Object.assign(this.cursor.style, {
      width: `${d}px`, height: `${d}px`,
      left: `${event.clientX - rect.left - d / 2}px`, top: `${event.clientY - rect.top - d / 2}px`,
    });
  }

  _commit() {
    this._remember();
    const ctx = this.mask.getContext("2d");
    ctx.globalCompositeOperation = this.tool === "eraser" ? "darken" : "lighten";
    ctx.drawImage(this.stroke, 0, 0);
    ctx.globalCompositeOperation = "source-over";
    this._strokeActive = false;
    this.render();
    this._emit();
  }

  _frame() {
    this._strokeActive = true;
    if (this._pending) return;
    this._pending = requestAnimationFrame(() => {
      this._pending = null;
      this.render();
    });
  }

  // -- history and whole-mask actions -----------------------------------------------------------
  _snapshot() {
    return this.mask.getContext("2d").getImageData(0, 0, this.mask.width, this.mask.height);
  }

  _remember() {
    this.undoStack.push(this._snapshot());
    if (this.undoStack.length > UNDO_LIMIT) this.undoStack.shift();
    this.redoStack = [];
  }

  _restore(from, to) {
    if (!this.mask || !from.length) return;
    to.push(this._snapshot());
    this.mask.getContext("2d").putImageData(from.pop(), 0, 0);
    this.render();
    this._emit();
  }

  undo() { this._restore(this.undoStack, this.redoStack); }
  redo() { this._restore(this.redoStack, this.undoStack); }

  clear() {
    if (!this.mask) return;
    this._remember();
    this._fill(this.mask, "#000");
    this.render();
    this._emit();
  }

  invert() {
    if (!this.mask) return;
    this._remember();
    const data = this._snapshot();
    const px = data.data;
    for (let i = 0; i < px.length; i += 4) { px[i] = px[i + 1] = px[i + 2] = 255 - px[i]; }
    this.mask.getContext("2d").putImageData(data, 0, 0);
    this.render();
    this._emit();
  }

  /** Load a mask file: alpha when it is not uniformly opaque (thresholded at 128 when `round`),
   * otherwise luminance; resized to the image (A1111's rules, spec §2.4). */
  async loadMask(src, round) {
    if (!this.image) throw new Error("open an image before its mask");
    const img = await loadImage(src);
    const tmp = canvas(this.image.width, this.image.height);
    const ctx = tmp.getContext("2d");
    ctx.drawImage(img, 0, 0, tmp.width, tmp.height);
    const data = ctx.getImageData(0, 0, tmp.width, tmp.height);
    const px = data.data;
    let alpha = false;
    for (let i = 3; i < px.length; i += 4) if (px[i] !== 255) { alpha = true; break; }
    for (let i = 0; i < px.length; i += 4) {
      let m = alpha ? px[i + 3] : Math.floor((299 * px[i] + 587 * px[i + 1] + 114 * px[i + 2]) / 1000);
      if (alpha && round) m = m > 128 ? 255 : 0;
      px[i] = px[i + 1] = px[i + 2] = m;
      px[i + 3] = 255;
    }
    this._remember();
    this.mask.getContext("2d").putImageData(data, 0, 0);
    this.render();
    this._emit();
  }

  // -- showing ----------------------------------------------------------------------------------
  /** The mask with the current stroke merged in, as pixel data. */
  _current() {
    if (!this._strokeActive) return this._snapshot();
    const tmp = canvas(this.mask.width, this.mask.height);
    const ctx = tmp.getContext("2d");
    ctx.drawImage(this.mask, 0, 0);
    ctx.globalCompositeOperation = this.tool === "eraser" ? "darken" : "lighten";
    ctx.drawImage(this.stroke, 0, 0);
    return ctx.getImageData(0, 0, tmp.width, tmp.height);
  }

  render() {
    if (!this.mask) return;
    const data = this._current();
    const px = data.data;
    let any = false;
    for (let i = 0; i < px.length; i += 4) {
      const m = px[i];
      if (m) any = true;
      px[i] = 255; px[i + 1] = 40; px[i + 2] = 90; px[i + 3] = m;
    }
    this.painted = any;
    this.overlayCanvas.getContext("2d").putImageData(data, 0, 0);
    this.overlayCanvas.style.opacity = String(this.opacity);
  }

  setOpacity(value) { this.opacity = value; this.render(); }
  setVisible(on) { this.overlayCanvas.style.visibility = on ? "visible" : "hidden"; }

  setZoom(z) {
    if (!this.image) return;
    this.zoom = Math.min(16, Math.max(0.05, z));
    this.box.style.width = `${Math.round(this.image.width * this.zoom)}px`;
    this.box.style.height = `${Math.round(this.image.height * this.zoom)}px`;
    this.box.classList.toggle("pixelated", this.zoom > 1);
    this.dispatchEvent(new Event("zoom"));
  }

  fit() {
    if (!this.image) return;
    const w = this.stage.clientWidth - 16;
    const h = Math.max(240, window.innerHeight * 0.6);
    this.setZoom(Math.min(w / this.image.width, h / this.image.height, 8) || 1);
  }

  /** The mask as a PNG data URL (grey, white = repaint), or null when nothing is painted. */
  maskDataURL() {
    if (!this.mask || !this.painted) return null;
    return this.mask.toDataURL("image/png");
  }
}
