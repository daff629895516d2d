// Cloister's console: sign-in, the hash router, the navigation for the
// signed-in roles, the language switcher and the idle timeout. The pages
// live in operator.js, dpo.js and audit.js.

import { announce, api, ApiError, clear, configureApi, errorText, field, h, LANGS, lang, preferredLanguage, setHome, setLanguage, t } from "./lib.js";
import { renderHealth, renderTokens, renderUser, renderUsers } from "./operator.js";
import { renderErasure, renderExports, renderHolds, renderProcessing, renderRetention } from "./dpo.js";
import { renderAudit } from "./audit.js";

/** The pages, in navigation order; a literal title per page so every key is greppable. */
const PAGES = [
  { path: "users", role: "operator", nav: () => t("nav.users"), title: () => t("users.title"), render: renderUsers },
  { path: "tokens", role: "operator", nav: () => t("nav.tokens"), title: () => t("tokens.title"), render: renderTokens },
  { path: "health", role: "operator", nav: () => t("nav.health"), title: () => t("health.title"), render: renderHealth },
  { path: "retention", role: "dpo", nav: () => t("nav.retention"), title: () => t("retention.title"), render: renderRetention },
  { path: "holds", role: "dpo", nav: () => t("nav.holds"), title: () => t("holds.title"), render: renderHolds },
  { path: "erasure", role: "dpo", nav: () => t("nav.erasure"), title: () => t("erasure.title"), render: renderErasure },
  { path: "exports", role: "dpo", nav: () => t("nav.exports"), title: () => t("exports.title"), render: renderExports },
  { path: "audit", role: "dpo", nav: () => t("nav.audit"), title: () => t("audit.title"), render: renderAudit },
  { path: "processing", role: "dpo", nav: () => t("nav.processing"), title: () => t("processing.title"), render: renderProcessing },
];

let session = null;
let sessionEnded = false;
let idleTimer = null;
let warnTimer = null;

function roleName(role) {
  const names = { operator: t("role.operator"), dpo: t("role.dpo") };
  return names[role] ?? role;
}

function languageName(code) {
  const names = { en: t("lang.en"), de: t("lang.de"), es: t("lang.es"), ca: t("lang.ca") };
  return names[code] ?? code;
}

function route() {
  const hash = location.hash.startsWith("#/") ? location.hash.slice(2) : "";
  const [path, ...rest] = hash.split("/");
  return { path, param: rest.length ? decodeURIComponent(rest.join("/")) : "" };
}

function allowed(page) {
  return session?.roles?.includes(page.role);
}

// ---------------------------------------------------------------------------
// Chrome: header, navigation, language switcher

function renderChrome() {
  const select = document.getElementById("lang");
  clear(select);
  for (const code of LANGS) select.append(h("option", { value: code, lang: code }, languageName(code)));
  select.value = lang();

  const who = document.getElementById("who");
  const nav = document.getElementById("nav");
  who.hidden = !session;
  nav.hidden = !session;
  if (!session) return;
  document.getElementById("who-user").textContent = session.user_id;
  document.getElementById("who-roles").textContent = session.roles.map(roleName).join(" · ");
  const list = clear(document.getElementById("nav-list"));
  const current = route().path;
  for (const page of PAGES.filter(allowed)) {
    const active = current === page.path;
    list.append(h("li", {}, h("a", { href: `#/${page.path}`, "aria-current": active ? "page" : null }, page.nav())));
  }
}

function pageFrame(title) {
  const container = clear(document.getElementById("page"));
  const heading = h("h1", { tabindex: "-1", id: "page-title" }, title);
  const section = h("div", { class: "page" });
  container.append(heading, section);
  document.title = `${title} · ${t("app.title")}`;
  return { heading, section };
}

// ---------------------------------------------------------------------------
// Sign-in

function renderSignIn(focus) {
  renderChrome();
  const { heading, section } = pageFrame(t("signin.title"));
  if (sessionEnded) section.append(h("p", { class: "notice warn", role: "alert" }, t("signin.ended")));
  const user = field(t("signin.user"), { name: "user", autocomplete: "username", required: true, spellcheck: "false", autocapitalize: "none" }, { hint: t("signin.user_hint") });
  const password = field(t("signin.password"), { name: "password", type: "password", autocomplete: "current-password", required: true });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", class: "primary" }, t("signin.submit"));
  const form = h("form", { class: "card narrow", id: "signin" }, user.row, password.row, error, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    error.hidden = true;
    try {
      const answer = await api("POST", "session", { user: user.input.value.trim(), password: password.input.value });
      password.input.value = "";
      startSession(answer);
      sessionEnded = false;
      const first = PAGES.find(allowed);
      if (!route().path && first) location.hash = `#/${first.path}`;
      else await render();
    } catch (e) {
      error.textContent = e instanceof ApiError && e.status === 403 ? t("signin.refused") : errorText(e);
      if (e instanceof ApiError && e.status === 403 && e.serverText) error.textContent += ` (${e.serverText})`;
      error.hidden = false;
      submit.disabled = false;
      password.input.value = "";
      password.input.focus();
    }
  });
  section.append(h("p", {}, t("signin.intro")), form);
  if (focus) heading.focus();
  ssoLinks().then((links) => {
    if (links.length) form.before(h("ul", { class: "sso" }, ...links.map((a) => h("li", {}, a))), h("p", {}, t("signin.or_password")));
  });
}

/** Buttons for the institution's identity providers, when the server has
 * any: single sign-on comes back here with a login token. */
async function ssoLinks() {
  try {
    const response = await fetch("/_matrix/client/v3/login");
    const { flows = [] } = await response.json();
    const back = encodeURIComponent(`${location.origin}/_cloister/console/`);
    return flows
      .filter((f) => f.type === "m.login.sso")
      .flatMap((f) => f.identity_providers ?? [])
      .map((idp) =>
        h(
          "a",
          { class: "button", href: `/_matrix/client/v3/login/sso/redirect/${encodeURIComponent(idp.id)}?redirectUrl=${back}` },
          t("signin.sso", { name: idp.name ?? idp.id }),
        ),
      );
  } catch {
    return [];
  }
}

/** Back from single sign-on: `?loginToken=` becomes a console session, and
 * leaves the address bar (and the history) at once. */
async function finishSso() {
  const token = new URLSearchParams(location.search).get("loginToken");
  if (!token) return false;
  history.replaceState(null, "", location.pathname + location.hash);
  try {
    startSession(await api("POST", "session", { login_token: token }));
    return true;
  } catch (e) {
    announce(`${t("signin.sso_failed")} ${errorText(e)}`, "error");
    return false;
  }
}

// ---------------------------------------------------------------------------
// Session and idle timeout

function startSession(answer) {
  session = answer;
  setHome(answer.user_id);
  configureApi({ csrf: answer.csrf_token });
  activity();
}

function stopTimers() {
  clearTimeout(idleTimer);
  clearTimeout(warnTimer);
}

/** Any successful API call keeps the session alive on the server; the same here. */
function activity() {
  stopTimers();
  if (!session) return;
  const idle = Number(session.idle_timeout_ms) || 0;
  const absolute = session.expires_ts ? session.expires_ts - Date.now() : Infinity;
  const left = Math.min(idle > 0 ? idle : Infinity, absolute);
  if (!Number.isFinite(left)) return;
  if (left > 120_000 && idle > 0 && idle <= absolute) {
    warnTimer = setTimeout(warnIdle, left - 60_000);
  }
  idleTimer = setTimeout(() => endSession(true), Math.max(0, left));
}

function warnIdle() {
  const stay = h("button", { type: "button", class: "small" }, t("session.stay"));
  stay.addEventListener("click", async () => {
    try {
      startSession({ ...(await api("GET", "session")) });
      announce(t("session.extended"), "ok");
    } catch (e) {
      announce(errorText(e), "error");
    }
  });
  const region = document.getElementById("status");
  announce(t("session.expiring"), "warn");
  region.append(" ", stay);
}

function endSession(ended) {
  if (session && ended) {
    // The server ends it too; tell it anyway, best effort.
    api("DELETE", "session").catch(() => {});
  }
  stopTimers();
  session = null;
  sessionEnded = ended;
  configureApi({ csrf: "" });
  announce("");
  renderSignIn(true);
}

// ---------------------------------------------------------------------------
// Router

let renderCount = 0;

/** Renders the page the hash names; #page is aria-busy until its data is shown. */
async function render({ focus = true } = {}) {
  renderCount += 1;
  const mine = renderCount;
  const container = document.getElementById("page");
  container.setAttribute("aria-busy", "true");
  try {
    await renderPage(mine, focus);
  } finally {
    if (mine === renderCount) container.setAttribute("aria-busy", "false");
  }
}

async function renderPage(mine, focus) {
  announce("");
  if (!session) {
    renderSignIn(focus);
    return;
  }
  renderChrome();
  const { path, param } = route();
  const page = PAGES.find((p) => p.path === path);
  if (!page) {
    const first = PAGES.find(allowed);
    if (!path && first) {
      location.replace(`#/${first.path}`);
      return;
    }
    const { heading, section } = pageFrame(t("notfound.title"));
    section.append(h("p", {}, t("notfound.text")));
    if (focus) heading.focus();
    return;
  }
  const { heading, section } = pageFrame(page.title());
  if (!allowed(page)) {
    const needed = roleName(page.role);
    section.append(h("p", { class: "notice warn", id: "not-allowed" }, t("page.not_allowed", { role: needed })));
    if (focus) heading.focus();
    return;
  }
  if (focus) heading.focus();
  try {
    if (page.path === "users" && param) await renderUser(section, param, heading);
    else await page.render(section, param, heading);
  } catch (e) {
    if (mine !== renderCount || !session) return;
    section.append(h("p", { class: "error", role: "alert" }, errorText(e)));
  }
}

// ---------------------------------------------------------------------------
// Start

async function start() {
  await setLanguage(preferredLanguage());
  document.getElementById("lang").addEventListener("change", async (event) => {
    await setLanguage(event.target.value, true);
    await render({ focus: false });
    document.getElementById("lang").focus();
  });
  document.getElementById("skip").addEventListener("click", (event) => {
    event.preventDefault();
    (document.getElementById("page-title") ?? document.getElementById("main")).focus();
  });
  document.getElementById("sign-out").addEventListener("click", async () => {
    try {
      await api("DELETE", "session");
    } catch {
      // signed out either way
    }
    endSession(false);
    announce(t("signin.signed_out"), "ok");
  });
  configureApi({
    activity,
    sessionLost: () => {
      if (session) endSession(true);
    },
  });
  try {
    if (!(await finishSso())) startSession(await api("GET", "session"));
  } catch (e) {
    session = null;
    if (!(e instanceof ApiError && e.status === 401)) announce(errorText(e), "error");
  }
  window.addEventListener("hashchange", () => {
    if (location.hash.startsWith("#/") || location.hash === "") render();
  });
  await render({ focus: false });
}

start();
