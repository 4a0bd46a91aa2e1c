// Calls to the REST API from the browser session: JSON in and out, the CSRF header on every
// unsafe request, and problem+json errors as ApiProblem with the server's own message.

const CSRF_COOKIE = "bf_csrf";
const CSRF_HEADER = "X-CSRF-Token";
const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

/** An error answer of the API (RFC 9457 problem), or a network failure (status 0). */
export class ApiProblem extends Error {
  constructor(status, type, title, detail, retryAfter = null) {
    super(detail || title || `request failed (${status})`);
    this.name = "ApiProblem";
    this.status = status;
    this.type = type || "";
    this.title = title || "";
    this.detail = detail || "";
    this.retryAfter = retryAfter;
  }

  /** The last part of the problem type, e.g. "rate-limited". */
  get slug() {
    return this.type.split(":").pop();
  }
}

/** The CSRF token the login left in its readable cookie (double submit). */
export function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === CSRF_COOKIE) return decodeURIComponent(rest.join("="));
  }
  return "";
}

/** Send a request to the API; resolves to the parsed JSON body (null when empty). */
export async function api(path, { method = "GET", body, signal } = {}) {
  const headers = { Accept: "application/json, application/problem+json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (!SAFE.has(method)) headers[CSRF_HEADER] = csrfToken();
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      signal,
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiProblem(0, "network", "No connection", "the server cannot be reached; check the connection and try again");
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const retry = Number.parseInt(response.headers.get("Retry-After") || "", 10);
    throw new ApiProblem(
      response.status,
      data?.type,
      data?.title || response.statusText,
      data?.detail || `the server answered ${response.status}`,
      Number.isFinite(retry) ? retry : data?.retry_after ?? null,
    );
  }
  return data;
}

/** Go to the sign-in page, coming back here afterwards. */
export function goToLogin() {
  const here = window.location.pathname + window.location.search;
  window.location.assign(here === "/" ? "/login" : `/login?next=${encodeURIComponent(here)}`);
}

/** Handle the answers every page treats alike: 401 signs in again. True if handled. */
export function handleSessionProblem(problem) {
  if (problem instanceof ApiProblem && problem.status === 401) {
    goToLogin();
    return true;
  }
  if (problem instanceof ApiProblem && problem.slug === "password-change-required") {
    window.location.assign("/password");
    return true;
  }
  return false;
}
