// The OAuth 2.0 sign-in pages (/_cloister/oauth2/…, /_cloister/account/)
// in real Chromium (Debian's, driven by puppeteer-core), against a server
// this file starts from CLOISTER_BIN:
//
//   - an app's authorization in a browser: the sign-in page in English,
//     German, Spanish and Catalan (<html lang>, localized heading), a wrong
//     password, the consent page naming the app, its host and the account,
//     and the code arriving at the app's redirect URI (the browser's
//     cookie, `__Host-` and SameSite=Lax, really carries the sign-in);
//   - the same by keyboard alone;
//   - the device code page (RFC 8628) and the account page's reset question;
//   - at 360 px no sideways scrolling;
//   - axe-core's WCAG 2.1 A and AA rules on every page and state, in all
//     four languages.
//
// Run: CLOISTER_BIN=target/debug/cloister node --test tests/js/oauth-pages.test.mjs

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CHROMIUM, LANGS, Server, assertAccessible, axeViolations, freePort, launchBrowser, newPage } from "./console-support.mjs";

const BIN = process.env.CLOISTER_BIN ?? "";
const PASSWORD = "oauth-pages-password-1";
const APP = "https://app.example.org/callback";
const TIMEOUT = 120_000;
const SKIP =
  !existsSync(CHROMIUM) && !process.env.CI
    ? `Chromium not found at ${CHROMIUM}: install Debian's chromium (or set CHROMIUM) to run the OAuth pages' browser tests`
    : false;

/** The sign-in heading per language (server/src/api/oauth/i18n.rs). */
const SIGN_IN = { en: "Sign in", de: "Anmelden", es: "Iniciar sesión", ca: "Inicia la sessió" };

let server;
let browser;
let dir;
let clientId;
let deviceClientId;

const b64url = (buf) => buf.toString("base64").replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

function pkce() {
  const verifier = b64url(createHash("sha256").update(String(Math.random())).digest()) + "-verifier";
  return { verifier, challenge: b64url(createHash("sha256").update(verifier).digest()) };
}

function authorizeUrl(challenge, lang, device = "BROWSERTEST") {
  const q = new URLSearchParams({
    response_type: "code",
    client_id: clientId,
    redirect_uri: APP,
    scope: `urn:matrix:client:api:* urn:matrix:client:device:${device}`,
    state: "st-1",
    code_challenge: challenge,
    code_challenge_method: "S256",
    lang,
  });
  return `${server.url}/_cloister/oauth2/authorize?${q}`;
}

async function register(metadata) {
  const response = await fetch(`${server.url}/_cloister/oauth2/register`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(metadata),
  });
  const json = await response.json();
  assert.equal(response.status, 201, JSON.stringify(json));
  return json.client_id;
}

/**
 * A page whose navigations to the app are stopped and recorded: the app is
 * not there, and the test wants only the URL the code arrives at.
 */
async function appPage(options) {
  const page = await newPage(browser, options);
  page.arrivals = [];
  await page.setRequestInterception(true);
  page.on("request", (r) => {
    if (r.url().startsWith("https://app.example.org/")) {
      page.arrivals.push(r.url());
      r.abort();
    } else {
      r.continue();
    }
  });
  return page;
}

async function noSidewaysScroll(page, where) {
  const wide = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  assert.equal(wide, false, `${where} scrolls sideways at 360 px`);
}

before(async () => {
  if (SKIP) return;
  assert.ok(BIN, "set CLOISTER_BIN to the cloister binary");
  dir = mkdtempSync(join(tmpdir(), "cloister-oauth-pages-"));
  server = new Server(BIN, dir, await freePort());
  await server.start();
  await server.register("alice", PASSWORD);
  clientId = await register({
    client_name: "Example App",
    client_uri: "https://app.example.org/",
    redirect_uris: [APP],
    token_endpoint_auth_method: "none",
  });
  deviceClientId = await register({
    client_name: "Example TV",
    client_uri: "https://app.example.org/",
    application_type: "native",
    grant_types: ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
    token_endpoint_auth_method: "none",
  });
  browser = await launchBrowser();
}, { timeout: TIMEOUT });

after(async () => {
  await browser?.close();
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("an app's sign-in, in four languages, accessible, ending at the app with a code", { skip: SKIP, timeout: TIMEOUT }, async () => {
  const found = [];
  for (const lang of LANGS) {
    const page = await appPage();
    const { verifier, challenge } = pkce();
    await page.goto(authorizeUrl(challenge, lang), { waitUntil: "domcontentloaded" });
    assert.equal(await page.$eval("html", (h) => h.lang), lang);
    assert.equal(await page.$eval("h1", (h) => h.textContent), SIGN_IN[lang]);
    assert.match(await page.$eval("main", (m) => m.textContent), /Example App/);
    found.push(...(await axeViolations(page, `sign-in (${lang})`)));
    await page.setViewport({ width: 360, height: 740 });
    await noSidewaysScroll(page, `sign-in (${lang})`);
    found.push(...(await axeViolations(page, `sign-in (${lang}, 360 px)`)));
    await page.setViewport({ width: 1280, height: 800 });

    // A wrong password: the same page with an alert tied to the fields.
    await page.type("#username", "alice");
    await page.type("#password", "wrong");
    await Promise.all([page.waitForNavigation(), page.click("button[value=sign_in]")]);
    assert.ok(await page.$("[role=alert]"), "an alert for the wrong password");
    assert.equal(await page.$eval("#password", (i) => i.getAttribute("aria-invalid")), "true");
    found.push(...(await axeViolations(page, `wrong password (${lang})`)));

    await page.type("#username", "alice");
    await page.type("#password", PASSWORD);
    await Promise.all([page.waitForNavigation(), page.click("button[value=sign_in]")]);
    const consent = await page.$eval("main", (m) => m.textContent);
    assert.match(consent, /Example App/);
    assert.match(consent, /app\.example\.org/);
    assert.match(consent, /@alice:/);
    found.push(...(await axeViolations(page, `consent (${lang})`)));
    await page.setViewport({ width: 360, height: 740 });
    await noSidewaysScroll(page, `consent (${lang})`);
    await page.setViewport({ width: 1280, height: 800 });

    await page.click("button[value=allow]");
    for (let i = 0; i < 50 && page.arrivals.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(page.arrivals.length, 1, "the browser went on to the app");
    const arrived = new URL(page.arrivals[0]);
    assert.equal(arrived.searchParams.get("state"), "st-1");
    const code = arrived.searchParams.get("code");
    assert.ok(code, `a code at ${arrived}`);
    // The code is good: the app exchanges it.
    const response = await fetch(`${server.url}/_cloister/oauth2/token`, {
      method: "POST",
      body: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: APP, client_id: clientId, code_verifier: verifier }),
    });
    const tokens = await response.json();
    assert.equal(response.status, 200, JSON.stringify(tokens));
    await page.ownContext.close();
  }
  assertAccessible(found);
});

test("the whole sign-in by keyboard alone", { skip: SKIP, timeout: TIMEOUT }, async () => {
  const page = await appPage();
  const { challenge } = pkce();
  await page.goto(authorizeUrl(challenge, "en", "KEYBOARD01"), { waitUntil: "domcontentloaded" });
  // The username field gets the focus (autofocus); type, Tab, type, Enter.
  await page.waitForFunction(() => document.activeElement?.id === "username", { timeout: 5_000 });
  await page.keyboard.type("alice");
  await page.keyboard.press("Tab");
  await page.keyboard.type(PASSWORD);
  await Promise.all([page.waitForNavigation(), page.keyboard.press("Enter")]);
  // Consent: Tab to Allow, Enter.
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.value), "allow");
  await page.keyboard.press("Enter");
  for (let i = 0; i < 50 && page.arrivals.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
  assert.ok(new URL(page.arrivals[0]).searchParams.get("code"), `arrived: ${page.arrivals}`);
  await page.ownContext.close();
});

test("the device code page and the account page, accessible in four languages", { skip: SKIP, timeout: TIMEOUT }, async () => {
  const found = [];
  for (const lang of LANGS) {
    const response = await fetch(`${server.url}/_cloister/oauth2/device`, {
      method: "POST",
      body: new URLSearchParams({ client_id: deviceClientId, scope: `urn:matrix:client:api:* urn:matrix:client:device:TVDEVICE${lang.toUpperCase()}01` }),
    });
    const grant = await response.json();
    assert.equal(response.status, 200, JSON.stringify(grant));
    const page = await newPage(browser);
    await page.goto(`${grant.verification_uri}?lang=${lang}`, { waitUntil: "domcontentloaded" });
    assert.equal(await page.$eval("html", (h) => h.lang), lang);
    found.push(...(await axeViolations(page, `device code (${lang})`)));
    await page.type("#code", grant.user_code.toLowerCase());
    await Promise.all([page.waitForNavigation(), page.click("button")]);
    await page.type("#username", "alice");
    await page.type("#password", PASSWORD);
    await Promise.all([page.waitForNavigation(), page.click("button[value=sign_in]")]);
    assert.match(await page.$eval("main", (m) => m.textContent), /Example TV/);
    await Promise.all([page.waitForNavigation(), page.click("button[value=allow]")]);
    assert.ok(await page.$("[role=status]"), "the device is told");
    found.push(...(await axeViolations(page, `device done (${lang})`)));
    await page.ownContext.close();

    const account = await newPage(browser);
    await account.goto(`${server.url}/_cloister/account/?action=org.matrix.cross_signing_reset&lang=${lang}`, { waitUntil: "domcontentloaded" });
    await account.type("#username", "alice");
    await account.type("#password", PASSWORD);
    await Promise.all([account.waitForNavigation(), account.click("button[value=sign_in]")]);
    assert.ok(await account.$("button[value=allow]"), "the reset question");
    found.push(...(await axeViolations(account, `reset question (${lang})`)));
    await account.setViewport({ width: 360, height: 740 });
    await noSidewaysScroll(account, `reset question (${lang})`);
    await account.ownContext.close();
  }
  assertAccessible(found);
});
