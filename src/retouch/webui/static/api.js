// Talking to this server: JSON requests, its error bodies, and whether the server can be reached.
// Every path is relative to the page's own origin; nothing else is ever contacted.

export class ApiError extends Error {
  /** A 4xx/5xx answer; `detail` is the server's sentence (A1111's error body). */
  constructor(status, body) {
    const detail = typeof body?.detail === "string" ? body.detail : JSON.stringify(body?.detail ?? body);
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

/** Reachability of the server, with a probe loop while it is lost. Fires "change". */
class Connection extends EventTarget {
  constructor() {
    super();
    this.online = true;
    this._probe = null;
  }

  lost() {
    if (!this.online) return;
    this.online = false;
    this.dispatchEvent(new Event("change"));
    this._probe = setInterval(() => this.check(), 2000);
  }

  async check() {
    try {
      const r = await fetch("/sdapi/v1/sd-models", { cache: "no-store" });
      if (r.ok) this.found();
    } catch {
      /* still lost */
    }
  }

  found() {
    if (this.online) return;
    this.online = true;
    clearInterval(this._probe);
    this.dispatchEvent(new Event("change"));
  }

  /** Resolves once the server answers again (at once when it does now). */
  whenOnline() {
    if (this.online) return Promise.resolve();
    return new Promise((resolve) => {
      const on = () => {
        if (this.online) {
          this.removeEventListener("change", on);
          resolve();
        }
      };
      this.addEventListener("change", on);
    });
  }
}

export const connection = new Connection();

/**
 * fetch() with JSON in and out. Resolves to the parsed body (null for 204), rejects with ApiError
 * for an error status, and marks the connection lost (then rethrows) when the server is unreachable.
 */
export async function api(path, { method = "GET", body, as = "json" } = {}) {
  const init = { method, headers: {}, cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    connection.lost();
    throw err;
  }
  connection.found();
  if (!response.ok) {
    let payload;
    try {
      payload = await response.json();
    } catch {
      payload = { detail: `${response.status} ${response.statusText}` };
    }
    throw new ApiError(response.status, payload);
  }
  if (response.status === 204) return null;
  return as === "blob" ? response.blob() : response.json();
}

/** GET a listing route; null when this server does not have it (404). */
export async function optional(path) {
  try {
    return await api(path);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
}
