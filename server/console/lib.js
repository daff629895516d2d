// The console's shared pieces: message catalogs and localized formatting,
// DOM building without innerHTML, and the API client (cookie session +
// X-CSRF-Token on every change).
//
// Every catalog lookup is t() with a literal key string, so that a test can scan the
// sources for the keys in use; never pass a computed key to t().

export const LANGS = ["en", "de", "es", "ca"];
const ASSETS = "/_cloister/console/assets/";
const API = "/_cloister/console/api/";
const LANG_KEY = "cloister.console.lang";

let catalog = {};
let locale = "en";

/** The message for `key` in the chosen language, with {name} placeholders filled from `vars`.
 * Every catalog has every key (a test checks), so there is no fallback language. */
export function t(key, vars) {
  const text = catalog[key] ?? key;
  if (!vars) return text;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

export function lang() {
  return locale;
}

async function fetchCatalog(code) {
  const response = await fetch(`${ASSETS}i18n/${code}.json`, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`catalog ${code}: HTTP ${response.status}`);
  return response.json();
}

/** The stored choice, else the first of the browser's languages we have, else English. */
export function preferredLanguage() {
  let stored = null;
  try {
    stored = localStorage.getItem(LANG_KEY);
  } catch {
    // storage may be disabled
  }
  if (LANGS.includes(stored)) return stored;
  for (const tag of navigator.languages ?? [navigator.language]) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (LANGS.includes(base)) return base;
  }
  return "en";
}

export async function setLanguage(code, remember = false) {
  if (!LANGS.includes(code)) code = "en";
  catalog = await fetchCatalog(code);
  locale = code;
  document.documentElement.lang = code;
  if (remember) {
    try {
      localStorage.setItem(LANG_KEY, code);
    } catch {
      // not remembered then
    }
  }
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
}

// ---------------------------------------------------------------------------
// Localized formatting

/** `one` or `other` (both already looked up) by the chosen language's plural rule for `n`. */
export function plural(n, one, other) {
  return new Intl.PluralRules(locale).select(Number(n)) === "one" ? one : other;
}

export function fmtNumber(n) {
  return typeof n === "number" ? new Intl.NumberFormat(locale).format(n) : String(n ?? "");
}

export function fmtDate(ts) {
  if (ts === null || ts === undefined || ts === "") return t("common.none");
  return new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "medium" }).format(new Date(ts));
}

export function fmtBytes(n) {
  const units = ["byte", "kilobyte", "megabyte", "gigabyte"];
  let i = 0;
  let v = Number(n) || 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return new Intl.NumberFormat(locale, {
    style: "unit",
    unit: units[i],
    unitDisplay: i === 0 ? "long" : "short",
    maximumFractionDigits: i === 0 ? 0 : 1,
  }).format(v);
}

const UNIT_MS = [
  ["days", 86_400_000],
  ["hours", 3_600_000],
  ["minutes", 60_000],
  ["seconds", 1000],
  ["milliseconds", 1],
];

/** A duration in milliseconds as words ("30 days", "1 day, 12 hours"). */
export function fmtDuration(ms) {
  let rest = Math.max(0, Math.round(Number(ms) || 0));
  if (rest === 0) {
    return new Intl.NumberFormat(locale, { style: "unit", unit: "second", unitDisplay: "long" }).format(0);
  }
  const parts = {};
  for (const [unit, size] of UNIT_MS) {
    if (rest >= size) {
      parts[unit] = Math.floor(rest / size);
      rest %= size;
    }
  }
  // Two largest units are enough to read.
  const kept = Object.fromEntries(Object.entries(parts).slice(0, 2));
  if (typeof Intl.DurationFormat === "function") {
    return new Intl.DurationFormat(locale, { style: "long" }).format(kept);
  }
  const [unit, value] = Object.entries(kept)[0];
  return new Intl.NumberFormat(locale, { style: "unit", unit: unit.slice(0, -1), unitDisplay: "long" }).format(value);
}

const LIFETIME_UNITS = { w: 7 * 86_400_000, d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000, ms: 1 };

/** A configured lifetime ("30d", "1h", "none") in words. */
export function fmtLifetime(text) {
  if (text === null || text === undefined || text === "none") return t("retention.forever");
  const m = /^(\d+)(ms|w|d|h|m|s)$/.exec(String(text));
  return m ? fmtDuration(Number(m[1]) * LIFETIME_UNITS[m[2]]) : String(text);
}

/** Milliseconds as days, for form fields ("" for none). */
export function msToDays(ms) {
  return typeof ms === "number" ? String(Math.round((ms / 86_400_000) * 10_000) / 10_000) : "";
}

// ---------------------------------------------------------------------------
// DOM

/**
 * Builds an element: h("button", { type: "submit", class: "primary", onclick }, "text", child…).
 * Strings become text nodes; null, undefined and false are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "value" || name === "checked" || name === "disabled" || name === "hidden") el[name] = value;
    else el.setAttribute(name === "className" ? "class" : name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

let ids = 0;
export function uid(prefix = "f") {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** A labelled form field: returns { row, input }. `kind` is "input" (default), "textarea" or "select". */
export function field(label, attrs = {}, { hint, kind = "input", options = [] } = {}) {
  const id = attrs.id ?? uid();
  const hintId = hint ? `${id}-hint` : null;
  const input = h(kind, { ...attrs, id, "aria-describedby": hintId });
  for (const [value, text] of options) input.append(h("option", { value }, text));
  const row = h(
    "div",
    { class: attrs.type === "checkbox" ? "field check" : "field" },
    attrs.type === "checkbox" ? [input, h("label", { for: id }, label)] : [h("label", { for: id }, label), input],
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
  );
  return { row, input };
}

/** A definition list of [term, value] pairs (value: string or node). */
export function dl(pairs, cls = "facts") {
  return h("dl", { class: cls }, pairs.map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value))));
}

/** A table: columns [{ label, cell(row) → string|node }]; small screens show each row as a card. */
export function table(columns, rows, caption) {
  return h(
    "table",
    {},
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c.label)))),
    h(
      "tbody",
      {},
      rows.map((row) => h("tr", {}, columns.map((c) => h("td", { "data-label": c.label }, c.cell(row))))),
    ),
  );
}

/** A link that saves `data` (Blob) as `filename`; the object URL is revoked when the page changes. */
export function downloadLink(blob, filename, text) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: filename, class: "button download" }, text);
  window.addEventListener("hashchange", () => URL.revokeObjectURL(url), { once: true });
  return a;
}

// ---------------------------------------------------------------------------
// Status messages (one aria-live region)

export function announce(text, kind = "info") {
  const region = document.getElementById("status");
  if (!region) return;
  region.className = `status ${kind}`;
  region.textContent = text;
  region.hidden = !text;
}

// ---------------------------------------------------------------------------
// The API

export class ApiError extends Error {
  constructor(status, errcode, error) {
    super(error || errcode || `HTTP ${status}`);
    this.status = status;
    this.errcode = errcode;
    this.serverText = error;
  }
}

let csrfToken = "";
let onActivity = () => {};
let onSessionLost = () => {};

export function configureApi({ csrf, activity, sessionLost }) {
  if (csrf !== undefined) csrfToken = csrf;
  if (activity) onActivity = activity;
  if (sessionLost) onSessionLost = sessionLost;
}

/** Calls the console API; resolves to the JSON answer (or a Blob with { blob: true }). */
export async function api(method, path, body, { blob = false } = {}) {
  const headers = { Accept: blob ? "application/octet-stream" : "application/json" };
  if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(API + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, "NETWORK", String(e));
  }
  if (response.ok) {
    onActivity();
    if (blob) return response.blob();
    const text = await response.text();
    return text ? JSON.parse(text) : {};
  }
  let err = {};
  try {
    err = await response.json();
  } catch {
    // not JSON
  }
  const error = new ApiError(response.status, err.errcode ?? "", err.error ?? "");
  if (response.status === 401 && ["M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"].includes(error.errcode)) {
    onSessionLost(error);
  }
  throw error;
}

/** A sentence for an error, in the chosen language, with the server's own text after it. */
export function errorText(e) {
  if (!(e instanceof ApiError)) return t("error.generic", { detail: String(e?.message ?? e) });
  const known = {
    NETWORK: t("error.network"),
    M_FORBIDDEN: t("error.forbidden"),
    M_NOT_FOUND: t("error.not_found"),
    M_LIMIT_EXCEEDED: t("error.rate_limited"),
    M_UNKNOWN_TOKEN: t("error.session"),
    M_MISSING_TOKEN: t("error.session"),
    M_INVALID_PARAM: t("error.invalid"),
    M_BAD_JSON: t("error.invalid"),
    M_USER_IN_USE: t("error.user_in_use"),
    M_INVALID_USERNAME: t("error.invalid_username"),
    M_WEAK_PASSWORD: t("error.weak_password"),
  };
  const text = known[e.errcode] ?? t("error.http", { status: e.status });
  return e.serverText && e.errcode !== "NETWORK" ? t("error.with_detail", { text, detail: e.serverText }) : text;
}

/** Encodes a path segment (user ids, room ids). */
export const seg = encodeURIComponent;

let home = "";

/** Remembers this server's name, from the signed-in user's id. */
export function setHome(userId) {
  home = String(userId).split(":").slice(1).join(":");
}

/** "alice" → "@alice:this.server"; full user ids as they are. */
export function fullUserId(text) {
  const s = String(text).trim();
  return s.startsWith("@") || !home ? s : `@${s}:${home}`;
}

/**
 * A button that asks before it acts: the first press shows `question` with
 * a confirm and a cancel button (focus moves to the question); confirm runs
 * `action`, which may throw (the error is shown next to the buttons).
 */
export function confirmButton(text, question, confirmText, action, { danger = true, small = false, quiet = false } = {}) {
  const cls = [danger && !quiet ? "danger" : "", small ? "small" : ""].join(" ").trim() || null;
  const open = h("button", { type: "button", class: cls }, text);
  const prompt = h("p", { tabindex: "-1", class: "confirm-question" }, question);
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const yes = h("button", { type: "button", class: danger ? "danger" : "primary" }, confirmText);
  const no = h("button", { type: "button" }, t("common.cancel"));
  const panel = h("div", { class: "confirm", hidden: true }, prompt, h("div", { class: "actions" }, yes, no), error);
  open.addEventListener("click", () => {
    panel.hidden = false;
    open.hidden = true;
    prompt.focus();
  });
  no.addEventListener("click", () => {
    panel.hidden = true;
    open.hidden = false;
    error.hidden = true;
    open.focus();
  });
  yes.addEventListener("click", async () => {
    yes.disabled = true;
    error.hidden = true;
    try {
      await action();
      // Still on the page (nothing re-rendered): back to the first button.
      const lost = document.activeElement === yes || document.activeElement === document.body;
      panel.hidden = true;
      open.hidden = false;
      yes.disabled = false;
      if (open.isConnected && lost) open.focus();
    } catch (e) {
      error.textContent = errorText(e);
      error.hidden = false;
      yes.disabled = false;
    }
  });
  return h("div", { class: "confirm-wrap" }, open, panel);
}

/** Runs a form's async submit handler with the button disabled and errors shown in `error`. */
export function onSubmit(form, error, handler) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const buttons = form.querySelectorAll("button");
    for (const b of buttons) b.disabled = true;
    error.hidden = true;
    try {
      await handler(event.submitter);
    } catch (e) {
      error.textContent = errorText(e);
      error.hidden = false;
    } finally {
      for (const b of buttons) b.disabled = false;
    }
  });
}

export function errorBox() {
  return h("p", { class: "error", role: "alert", tabindex: "-1", hidden: true });
}
