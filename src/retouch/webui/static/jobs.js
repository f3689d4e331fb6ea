// Jobs: submit to /api/v1/jobs, follow each one's server-sent events, show progress, ETA, queue
// position and the live preview, and offer Interrupt, Skip and Cancel. A lost connection is shown on
// the card and the job is picked up again once the server answers.

import { api, ApiError, connection } from "./api.js";

const FINAL = new Set(["done", "failed", "cancelled"]);

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function seconds(s) {
  if (!Number.isFinite(s) || s <= 0) return "";
  return s < 60 ? `${Math.ceil(s)} s` : `${Math.floor(s / 60)} min ${Math.ceil(s % 60)} s`;
}

export class JobList {
  constructor(list, summary, { onResult }) {
    this.list = list;
    this.summary = summary;
    this.onResult = onResult;
    this.jobs = new Map();
    this.count = 0;
    this._poll = null;
  }

  async submit(body, label) {
    const created = await api("/api/v1/jobs", { method: "POST", body });
    this.track(created.id, label, created);
    return created.id;
  }

  /** Pick up jobs this server is running or holding in its queue (after a reload). */
  async resume() {
    const listing = await api("/api/v1/jobs");
    for (const view of listing.jobs) {
      if (!FINAL.has(view.status) && !this.jobs.has(view.id)) this.track(view.id, "job from before", view);
    }
    this._summarise(listing);
  }

  track(id, label, view) {
    this.count += 1;
    const card = el("li", "job");
    card.dataset.job = id;
    const title = el("p", "job-title", `#${this.count} ${label}`);
    const status = el("p", "job-status", "queued");
    status.setAttribute("role", "status");
    const bar = el("progress", "job-bar");
    bar.max = 1;
    bar.value = 0;
    bar.setAttribute("aria-label", `Progress of job #${this.count}`);
    const preview = el("img", "job-preview");
    preview.alt = "live preview";
    preview.hidden = true;
    const buttons = el("div", "job-buttons");
    const job = { id, card, status, bar, preview, finished: false, busy: false, view: null };
    for (const [name, action] of [["Interrupt", "interrupt"], ["Skip", "skip"], ["Cancel", "cancel"]]) {
      const b = el("button", `job-${action}`, name);
      b.type = "button";
      b.addEventListener("click", () => this._act(job, action));
      buttons.append(b);
    }
    card.append(title, status, bar, preview, buttons);
    this.list.prepend(card);
    this.jobs.set(id, job);
    if (view) this._show(job, view);
    this._subscribe(job);
    this._startPolling();
    return job;
  }

  _subscribe(job) {
    const source = new EventSource(`/api/v1/jobs/${encodeURIComponent(job.id)}/events`);
    job.source = source;
    for (const kind of ["progress", "done", "failed", "cancelled"]) {
      source.addEventListener(kind, (event) => {
        connection.found();
        const view = JSON.parse(event.data);
        if (FINAL.has(kind)) {
          source.close();
          this._finish(job);
        } else {
          this._show(job, view);
        }
      });
    }
    source.onerror = () => {
      if (job.finished) return;
      source.close();
      job.status.textContent = "connection lost; reconnecting…";
      job.card.classList.add("lost");
      this._recover(job);
    };
  }

  async _recover(job) {
    for (;;) {
      try {
        const view = await api(`/api/v1/jobs/${encodeURIComponent(job.id)}`);
        job.card.classList.remove("lost");
        if (FINAL.has(view.status)) this._finish(job, view);
        else this._subscribe(job);
        return;
      } catch (err) {
        if (err instanceof ApiError) {
          job.finished = true;
          job.status.textContent = `lost: ${err.detail}`;
          job.card.classList.add("failed");
          return;
        }
        await connection.whenOnline();
      }
    }
  }

  _show(job, view) {
    job.view = view;
    job.card.dataset.status = view.status;
    if (view.status === "queued") {
      job.status.textContent = `queued, position ${(view.queue_position ?? 0) + 1}`;
    } else if (view.status === "running") {
      const batch = view.job_count > 1 ? `batch ${view.job_no + 1}/${view.job_count} · ` : "";
      const eta = seconds(view.eta_relative);
      const step = view.sampling_steps ? `step ${view.sampling_step}/${view.sampling_steps}` : "starting";
      job.status.textContent = `${batch}${step}${eta ? ` · ETA ${eta}` : ""}${view.interrupted ? " · interrupting" : ""}`;
      job.bar.value = view.progress;
      this._preview(job);
    }
  }

  async _preview(job) {
    if (job.busy || job.finished) return;
    job.busy = true;
    try {
      const blob = await api(`/api/v1/jobs/${encodeURIComponent(job.id)}/preview`, { as: "blob" });
      if (blob && !job.finished) {
        if (job.previewUrl) URL.revokeObjectURL(job.previewUrl);
        job.previewUrl = URL.createObjectURL(blob);
        job.preview.src = job.previewUrl;
        job.preview.hidden = false;
      }
    } catch {
      /* a missing preview is not an error */
    } finally {
      job.busy = false;
    }
  }

  async _finish(job, view) {
    if (job.finished) return;
    job.finished = true;
    job.card.querySelector(".job-buttons").hidden = true;
    try {
      view ??= await api(`/api/v1/jobs/${encodeURIComponent(job.id)}`);
    } catch (err) {
      job.status.textContent = `result lost: ${err.message}`;
      return;
    }
    job.card.dataset.status = view.status;
    job.bar.value = 1;
    api("/api/v1/jobs").then((listing) => this._summarise(listing), () => {});
    const took = view.started && view.finished ? ` in ${seconds(view.finished - view.started) || "0 s"}` : "";
    if (view.status === "done") {
      job.status.textContent = `${view.interrupted ? "interrupted, partial result" : "done"}${took}`;
      if (view.result?.images?.length) {
        job.preview.src = `data:image/png;base64,${view.result.images[0]}`;
        job.preview.hidden = false;
      }
      this.onResult(view);
    } else {
      job.card.classList.add("failed");
      job.status.textContent = `${view.status}: ${view.error?.detail ?? ""}`;
    }
  }

  async _act(job, action) {
    const path = `/api/v1/jobs/${encodeURIComponent(job.id)}`;
    try {
      if (action === "cancel") await api(path, { method: "DELETE" });
      else await api(`${path}/${action}`, { method: "POST" });
    } catch (err) {
      job.status.textContent = `${action}: ${err.message}`;
    }
  }

  _startPolling() {
    if (this._poll) return;
    this._poll = setInterval(async () => {
      const open = [...this.jobs.values()].some((j) => !j.finished);
      try {
        this._summarise(await api("/api/v1/jobs"));
      } catch {
        /* shown by the connection banner */
      }
      if (!open) {
        clearInterval(this._poll);
        this._poll = null;
      }
    }, 1500);
  }

  _summarise(listing) {
    const parts = [];
    if (listing.running) parts.push("1 running");
    if (listing.queued) parts.push(`${listing.queued} waiting`);
    this.summary.textContent = parts.length ? `(${parts.join(" · ")})` : "";
  }
}
