// Same-origin calls to the REST API with the signed-in Django session.
// Writes carry the CSRF token; X-Clinic-Id pins the clinic the page shows,
// so a user in several clinics never acts in another tab's clinic.

function meta(name) {
  const el = document.querySelector(`meta[name="${name}"]`);
  return el ? el.content : "";
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
    // 4xx (except timeouts and rate limits) will not improve by retrying.
    this.permanent = status >= 400 && status < 500 && status !== 408 && status !== 429;
  }
}

export async function apiFetch(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  const csrf = meta("csrf-token");
  const clinic = meta("clinic-id");
  if (csrf) headers["X-CSRFToken"] = csrf;
  if (clinic) headers["X-Clinic-Id"] = clinic;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch (err) {
    throw new ApiError(0, "network", String(err));
  }
  if (!response.ok) {
    let code = `http_${response.status}`;
    let message = "";
    try {
      const data = await response.json();
      if (data && data.error) {
        code = data.error.code || code;
        message = data.error.message || "";
      }
    } catch {
      // not JSON (proxy error page): keep the status code
    }
    throw new ApiError(response.status, code, message);
  }
  if (response.status === 204) return null;
  return response.json();
}

export const api = {
  createSession: (fields) => apiFetch("/api/v1/sessions/", { method: "POST", body: fields }),
  streamToken: (id) => apiFetch(`/api/v1/sessions/${id}/stream-token/`, { method: "POST", body: {} }),
  endSession: (id) => apiFetch(`/api/v1/sessions/${id}/end/`, { method: "POST", body: {} }),
};
