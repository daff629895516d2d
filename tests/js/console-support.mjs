// Helpers for console.test.mjs: a throwaway Cloister server (CLOISTER_BIN)
// with its own data directory, its CLI, plain Matrix client-server calls,
// and Chromium (Debian's, driven by puppeteer-core) with helpers to sign
// in, move between the console's pages and take screenshots.

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { jsonOf } from "./http.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
export const CONSOLE_DIR = join(HERE, "..", "..", "server", "console");
export const ARTIFACTS = join(HERE, "artifacts", "console");
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const LANGS = ["en", "de", "es", "ca"];
/** The message catalogs, as the console loads them. */
export const CATALOGS = Object.fromEntries(
  LANGS.map((lang) => [lang, JSON.parse(readFileSync(join(CONSOLE_DIR, "i18n", `${lang}.json`), "utf8"))]),
);

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export async function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.on("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------
// The server and its CLI

export class Server {
  constructor(bin, dataDir, port) {
    this.bin = bin;
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.env = {
      ...process.env,
      CLOISTER_LISTEN: `127.0.0.1:${port}`,
      CLOISTER_PUBLIC_BASEURL: `${this.url}/`,
      CLOISTER_DATA_DIR: dataDir,
      CLOISTER_REGISTRATION: "open",
      CLOISTER_RATE_LIMIT__ENABLED: "false",
      NO_COLOR: "1",
    };
    this.output = "";
    this.child = null;
    this.ended = null;
  }

  /** Runs `cloister ARGS…` against the same data directory; returns stdout. */
  cli(...args) {
    try {
      return execFileSync(this.bin, args, { env: this.env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    } catch (e) {
      throw new Error(`cloister ${args.join(" ")} failed (status ${e.status}): ${e.stderr || e.message}`);
    }
  }

  async start() {
    const child = spawn(this.bin, ["serve"], { env: this.env, stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    const keep = (chunk) => {
      this.output = (this.output + chunk).slice(-80_000);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    child.on("error", (e) => (this.ended = `could not run ${this.bin}: ${e.message}`));
    child.on("exit", (code, signal) => (this.ended ??= `exited with ${signal ?? `status ${code}`}`));
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (this.ended) throw new Error(`the server ${this.ended} before answering /health${this.log()}`);
      const ok = await fetch(`${this.url}/health`).then((r) => r.ok, () => false);
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`the server did not answer /health within 60 s${this.log()}`);
      await sleep(100);
    }
  }

  async stop() {
    if (!this.child || this.ended) return;
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  }

  log(lines = 60) {
    return `\n---- cloister server (last ${lines} lines) ----\n${this.output.split("\n").slice(-lines).join("\n")}`;
  }

  /** A raw client-server API call. */
  async api(method, path, { token, body } = {}) {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(`${this.url}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.status, json: await jsonOf(response), headers: response.headers };
  }

  /** Registers a Matrix account (user-interactive auth with m.login.dummy). */
  async register(localpart, password) {
    const request = { username: localpart, password, initial_device_display_name: `console test ${localpart}` };
    let { status, json } = await this.api("POST", "/_matrix/client/v3/register", { body: request });
    if (status === 401 && json.session) {
      ({ status, json } = await this.api("POST", "/_matrix/client/v3/register", {
        body: { ...request, auth: { type: "m.login.dummy", session: json.session } },
      }));
    }
    assert.equal(status, 200, `registering ${localpart}: HTTP ${status} ${JSON.stringify(json)}`);
    return json;
  }

  async login(user, password) {
    return this.api("POST", "/_matrix/client/v3/login", {
      body: { type: "m.login.password", identifier: { type: "m.id.user", user }, password },
    });
  }
}

// ---------------------------------------------------------------------------
// The browser

export async function launchBrowser() {
  const { default: puppeteer } = await import("puppeteer-core");
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--lang=en-US", "--disable-dev-shm-usage"],
  });
}

/** A page in a fresh browser profile (own cookies and storage), with its errors collected. */
export async function newPage(browser, { width = 1280, height = 800, downloads } = {}) {
  const context = await browser.createBrowserContext(
    downloads ? { downloadBehavior: { policy: "allow", downloadPath: downloads } } : {},
  );
  const page = await context.newPage();
  await page.setViewport({ width, height });
  page.problems = [];
  page.on("pageerror", (e) => page.problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // 401 on the first GET session (not signed in yet) and 403/404 the tests provoke are expected.
    if (m.type() === "error" && !/Failed to load resource/.test(m.text())) page.problems.push(`console: ${m.text()}`);
  });
  page.on("response", (r) => {
    if (r.status() >= 400 && r.url().includes("/_cloister/console/")) page.problems.push(`HTTP ${r.status()} ${r.request().method()} ${r.url()}`);
  });
  page.ownContext = context;
  return page;
}

export function consoleUrl(server) {
  return `${server.url}/_cloister/console/`;
}

/** Signs in through the sign-in form and waits for the navigation. */
export async function signIn(page, server, user, password) {
  await page.goto(consoleUrl(server), { waitUntil: "domcontentloaded" });
  await page.waitForSelector("#signin input[name=user]", { visible: true });
  await page.type("#signin input[name=user]", user);
  await page.type("#signin input[name=password]", password);
  await Promise.all([
    page.waitForSelector("#nav:not([hidden]) #nav-list a", { visible: true }),
    page.click("#signin button[type=submit]"),
  ]);
  await waitReady(page);
}

/** Waits until the page has shown its data (#page is no longer aria-busy). */
export async function waitReady(page, timeout = 20_000) {
  await page.waitForFunction(() => document.getElementById("page")?.getAttribute("aria-busy") === "false", { timeout });
}

/** Goes to #/PATH and waits for its heading and its data. */
export async function go(page, path, heading) {
  await page.evaluate((p) => {
    location.hash = `#/${p}`;
  }, path);
  await page.waitForFunction(
    (p) => location.hash === `#/${p}` && document.getElementById("page")?.getAttribute("aria-busy") === "false",
    { timeout: 20_000 },
    path,
  );
  if (heading) await waitText(page, "h1", heading);
}

/** Waits until the first element matching `selector` has exactly this text (trimmed). */
export async function waitText(page, selector, text, timeout = 15_000) {
  try {
    await page.waitForFunction(
      (s, want) => document.querySelector(s)?.textContent.trim() === want,
      { timeout },
      selector,
      text,
    );
  } catch (e) {
    const got = await page.$eval(selector, (el) => el.textContent.trim()).catch(() => "(no such element)");
    throw new Error(`${selector} should read ${JSON.stringify(text)}, reads ${JSON.stringify(got)}`, { cause: e });
  }
}

/** The visible text of an element. */
export function textOf(page, selector) {
  return page.$eval(selector, (el) => el.innerText);
}

/** Clicks the button (or link) whose visible text is exactly `text`, inside `scope`. */
export async function clickText(page, text, scope = "body") {
  const handle = await page.waitForFunction(
    (s, want) =>
      [...document.querySelectorAll(`${s} button, ${s} a`)].find(
        (el) => el.textContent.trim() === want && el.offsetParent !== null && !el.disabled,
      ),
    { timeout: 15_000 },
    scope,
    text,
  );
  await handle.asElement().click();
}

/** An API call from inside the page, with the session cookie (and the CSRF token when given). */
export function pageApi(page, method, path, { body, csrf } = {}) {
  return page.evaluate(
    async (m, p, b, c) => {
      const headers = {};
      if (b !== undefined) headers["Content-Type"] = "application/json";
      if (c) headers["X-CSRF-Token"] = c;
      const response = await fetch(`/_cloister/console/api/${p}`, {
        method: m,
        headers,
        body: b === undefined ? undefined : JSON.stringify(b),
        credentials: "same-origin",
      });
      const text = await response.text();
      let json = null;
      try {
        json = JSON.parse(text);
      } catch {
        // not JSON
      }
      return { status: response.status, json, text: json ? "" : text.slice(0, 200) };
    },
    method,
    path,
    body,
    csrf,
  );
}

/** Presses Tab until the focused element matches `selector`. */
export async function tabTo(page, selector, max = 60) {
  for (let i = 0; i < max; i += 1) {
    await page.keyboard.press("Tab");
    if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) return;
  }
  const at = await page.evaluate(() => document.activeElement?.outerHTML.slice(0, 120));
  throw new Error(`Tab never reached ${selector} in ${max} presses (focus is on ${at})`);
}

export async function focused(page) {
  return page.evaluate(() => {
    const el = document.activeElement;
    return el ? { tag: el.tagName.toLowerCase(), id: el.id, text: el.textContent.trim().slice(0, 200) } : null;
  });
}

/**
 * Catalog keys shown as text: a message missing from a catalog shows its
 * key. Returns the keys found in the page's visible text and data-i18n
 * elements still showing their key.
 */
export async function rawKeys(page) {
  const keys = Object.keys(CATALOGS.en);
  return page.evaluate((all) => {
    const text = document.body.innerText;
    const shown = all.filter((k) => new RegExp(`(^|[^\\w.])${k.replace(/\./g, "\\.")}($|[^\\w.])`).test(text));
    const untranslated = [...document.querySelectorAll("[data-i18n]")]
      .filter((el) => el.textContent.trim() === el.dataset.i18n)
      .map((el) => el.dataset.i18n);
    return [...new Set([...shown, ...untranslated])];
  }, keys);
}

/** Saves a screenshot to the artifacts directory (and, for `doc` names, to CLOISTER_DOC_SCREENSHOTS). */
export async function shot(page, name, { doc, fullPage = false } = {}) {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage });
  const docDir = process.env.CLOISTER_DOC_SCREENSHOTS;
  if (doc && docDir) {
    mkdirSync(docDir, { recursive: true });
    await page.screenshot({ path: join(docDir, `${doc}.png`), fullPage: false });
  }
}

/** Waits for a finished download named `name` in `dir` and returns its bytes. */
export async function downloaded(dir, name, timeout = 20_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const files = existsSync(dir) ? readdirSync(dir) : [];
    if (files.includes(name) && !files.some((f) => f.endsWith(".crdownload"))) {
      const bytes = readFileSync(join(dir, name));
      if (bytes.length > 0) return bytes;
    }
    if (Date.now() > deadline) throw new Error(`no download ${name} in ${dir} (found: ${files.join(", ") || "nothing"})`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------
// Accessibility: axe-core (WCAG 2.1 A and AA rules) in the page as it is

/** The WCAG 2.0 and 2.1 level A and AA rules. */
export const WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];
let axeSource = null;

/**
 * Runs axe-core on the page as it stands (or only on the elements matching
 * the selectors `within`) and returns its WCAG 2.1 A/AA violations as
 * readable lines, each headed by `where`: rule, impact, element, help, and
 * the failure summary with the rule's help page.
 *
 * axe's source is evaluated through the DevTools protocol (Runtime.evaluate,
 * which the page's CSP does not govern; a <script> tag would be refused by
 * it), so the console is checked as served, under its own strict CSP:
 * nothing bypasses or weakens it.
 */
export async function axeViolations(page, where, within = null) {
  axeSource ??= readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
  if (!(await page.evaluate(() => typeof window.axe === "object"))) {
    await page.evaluate(axeSource);
    // No outerHTML copied into the results: a fifth faster, and unused here.
    await page.evaluate(() => window.axe.configure({ noHtml: true }));
  }
  const violations = await page.evaluate(
    (tags, include) =>
      window.axe
        .run(include ? { include: include.map((s) => [s]) } : document, { runOnly: { type: "tag", values: tags }, resultTypes: ["violations"] })
        .then((r) =>
          r.violations.map((v) => ({
            id: v.id,
            impact: v.impact,
            help: v.help,
            url: v.helpUrl,
            nodes: v.nodes.map((n) => ({ target: n.target.flat(Infinity).join(" "), summary: n.failureSummary })),
          })),
        ),
    WCAG_TAGS,
    within,
  );
  return violations.flatMap((v) =>
    v.nodes.map((n) => `${where}: ${v.id} (${v.impact}) at ${n.target}: ${v.help}\n      ${n.summary.replace(/\n\s*/g, " ")} ${v.url}`),
  );
}

/** Fails with every violation found, one per line, when there are any. */
export function assertAccessible(found) {
  assert.ok(found.length === 0, `axe-core (WCAG 2.1 AA) found ${found.length} violation(s):\n    ${found.join("\n    ")}`);
}
