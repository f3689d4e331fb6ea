// Results: each image with its infotext (copyable), download as PNG (the server's PNG, infotext chunk
// included), "Send to input" and "Reuse seed".

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(text, onClick) {
  const b = el("button", null, text);
  b.type = "button";
  b.addEventListener("click", onClick);
  return b;
}

async function copyText(text, b) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = document.createElement("textarea");
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  b.textContent = "Copied";
  setTimeout(() => { b.textContent = "Copy infotext"; }, 1500);
}

export class Gallery {
  constructor(box, empty, { onSendToInput, onReuseSeed }) {
    Object.assign(this, { box, empty, onSendToInput, onReuseSeed });
  }

  /** Add the images of one finished job (its GET /api/v1/jobs/{id} view), newest first. */
  add(view) {
    const result = view.result;
    let info = {};
    try { info = JSON.parse(result.info); } catch { info = {}; }
    const texts = info.infotexts ?? [];
    const figures = result.images.map((data, i) => this._figure(data, i, texts[i], info, view));
    this.box.prepend(...figures);
    this.empty.hidden = true;
  }

  _figure(data, i, infotext, info, view) {
    const src = `data:image/png;base64,${data}`;
    const seed = info.all_seeds?.[i];
    const figure = el("figure", "result");
    figure.dataset.job = view.id;
    const img = el("img");
    img.src = src;
    img.alt = infotext ? `result: ${infotext.split("\n")[0].slice(0, 80)}` : "result image";
    const caption = el("figcaption");
    if (view.interrupted) caption.append(el("span", "badge", "interrupted: partial image"));
    if (infotext === undefined) caption.append(el("span", "badge", "mask"));
    const actions = el("div", "result-actions");
    const download = el("a", "button", "Download PNG");
    download.href = src;
    download.download = `retouch-${seed ?? i}.png`;
    actions.append(download, button("Send to input", () => this.onSendToInput(src)));
    if (infotext !== undefined) {
      const copy = button("Copy infotext", () => copyText(infotext, copy));
      actions.append(copy);
      if (seed !== undefined) actions.append(button(`Reuse seed ${seed}`, () => this.onReuseSeed(seed)));
      const text = el("pre", "infotext", infotext);
      text.tabIndex = 0;
      caption.append(text);
    }
    caption.append(actions);
    figure.append(img, caption);
    return figure;
  }
}
