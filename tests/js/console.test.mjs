// The DPO and operator console (/_cloister/console/) in real Chromium:
// Debian's chromium driven by puppeteer-core (no browser download), against
// a server this file starts from CLOISTER_BIN with its own data directory.
//
//   - a DPO sets a room's retention, runs a purge, places and releases legal
//     holds, erases a person and gets the receipt, downloads a sealed
//     export, verifies the audit log in the browser (WebAssembly) and sees a
//     tampered and a cut-back copy fail;
//   - an operator creates a user and a registration token (shown once) and
//     manages that user's devices, password and account;
//   - each role reaches only its own pages, in the browser and at the API;
//   - every page in English, German, Spanish and Catalan (headings from the
//     catalogs, no raw keys, <html lang>, localized durations), and at 360 px
//     in English and German (no sideways scrolling);
//   - the whole erasure flow with the keyboard alone;
//   - sign-in refusals and a session that ends;
//   - axe-core's WCAG 2.1 A and AA rules pass on every page in English and
//     German, at desktop width and at 360 px, and on the states between:
//     sign-in (refused, single sign-on, session ended), confirmations, the
//     erasure preview, refusal and receipt, verified and failed audit-log
//     verification, a token shown once, another role's page refused.
//
// Screenshots of every page go to tests/js/artifacts/console/; with
// CLOISTER_DOC_SCREENSHOTS=docs/console a few are written there for the docs.
//
// Run: CLOISTER_BIN=target/debug/cloister node --test tests/js/console.test.mjs
// (CHROMIUM=/path/to/chromium to use another browser; without one the tests
// are skipped, except under CI, where that is a failure.)

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createHash, generateKeyPairSync } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ARTIFACTS,
  CATALOGS,
  CHROMIUM,
  LANGS,
  Server,
  assertAccessible,
  axeViolations,
  clickText,
  consoleUrl,
  downloaded,
  focused,
  freePort,
  go,
  launchBrowser,
  newPage,
  pageApi,
  rawKeys,
  shot,
  signIn,
  tabTo,
  textOf,
  waitReady,
  waitText,
} from "./console-support.mjs";

const BIN = process.env.CLOISTER_BIN ?? "";
const PASSWORD = "console-test-password-1";
const TIMEOUT = 180_000;

const SKIP =
  !existsSync(CHROMIUM) && !process.env.CI
    ? `Chromium not found at ${CHROMIUM}: install Debian's chromium (or set CHROMIUM) to run the console's browser tests`
    : false;

/** The console's pages: hash path, catalog key of the heading and of the navigation entry, role. */
const PAGES = [
  { path: "users", title: "users.title", nav: "nav.users", role: "operator" },
  { path: "tokens", title: "tokens.title", nav: "nav.tokens", role: "operator" },
  { path: "health", title: "health.title", nav: "nav.health", role: "operator" },
  { path: "retention", title: "retention.title", nav: "nav.retention", role: "dpo" },
  { path: "holds", title: "holds.title", nav: "nav.holds", role: "dpo" },
  { path: "erasure", title: "erasure.title", nav: "nav.erasure", role: "dpo" },
  { path: "exports", title: "exports.title", nav: "nav.exports", role: "dpo" },
  { path: "audit", title: "audit.title", nav: "nav.audit", role: "dpo" },
  { path: "processing", title: "processing.title", nav: "nav.processing", role: "dpo" },
];
const en = CATALOGS.en;
/** The audit page's verification and the status line (its entries are checked with the page). */
const VERIFY = ["section[aria-labelledby=verify-h]", "#status"];
/** The languages whose pages axe-core checks, at desktop width and at 360 px. */
const AXE_LANGS = ["en", "de"];

let server;
let browser;
let dir;
let roomId;
/** Matrix accounts: user ids by localpart. */
const ids = {};
let recipientKey;

function fill(text, vars) {
  return text.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
}

/**
 * axe-core's WCAG 2.1 A/AA check for one test's page: check(where) runs it
 * on the page as it stands (with { narrow: true } at 360 px as well; with
 * { within: [selectors] } only there, where the rest of a large page is
 * checked by the walk over every page), and done() fails with every
 * violation found: rule, impact, element and help.
 */
function accessibility(page) {
  const found = [];
  return {
    async check(where, { narrow = false, within = null } = {}) {
      found.push(...(await axeViolations(page, where, within)));
      if (narrow) {
        const wide = page.viewport();
        await page.setViewport({ width: 360, height: 740 });
        found.push(...(await axeViolations(page, `${where} (360 px)`, within)));
        await page.setViewport(wide);
      }
    },
    done: () => assertAccessible(found),
  };
}

/** A test body whose failure carries the page's problems, a screenshot and the server log. */
function withDiagnostics(name, fn) {
  return async (t) => {
    const pages = [];
    try {
      await fn(t, pages);
    } catch (e) {
      let extra = "";
      for (const [i, page] of pages.entries()) {
        try {
          mkdirSync(ARTIFACTS, { recursive: true });
          await page.screenshot({ path: join(ARTIFACTS, `FAILED-${name}-${i}.png`), fullPage: true });
          extra += `\n  page ${i} at ${page.url()}; screenshot FAILED-${name}-${i}.png`;
        } catch {
          // the page may be gone
        }
        if (page.problems.length) extra += `\n  page ${i} problems:\n    ${page.problems.slice(-15).join("\n    ")}`;
      }
      throw new Error(`${e?.message ?? e}${extra}${server?.log() ?? ""}`, { cause: e });
    } finally {
      for (const page of pages) await page.ownContext.close().catch(() => {});
    }
  };
}

if (SKIP) {
  test("the console in Chromium", { skip: SKIP }, () => {});
} else {
  before(async () => {
    assert.ok(BIN, "set CLOISTER_BIN to the cloister binary");
    assert.ok(
      existsSync(CHROMIUM),
      `Chromium not found at ${CHROMIUM}; CI must have Debian's chromium installed (apt-get install chromium) or set CHROMIUM`,
    );
    dir = mkdtempSync(join(tmpdir(), "cloister-console-"));
    server = new Server(BIN, join(dir, "data"), await freePort());
    // Console accounts, made with the CLI before the server starts.
    for (const [name, roles] of [
      ["dpo", ["dpo"]],
      ["op", ["operator"]],
      ["both", ["operator", "dpo"]],
      ["norole", []],
    ]) {
      server.cli("user", "create", name, "--password", PASSWORD);
      for (const role of roles) server.cli("admin", "role", "grant", name, role);
    }
    recipientKey = server.cli("admin", "keygen", "--out", join(dir, "recipient.key")).trim().split("\n").pop();
    await server.start();
    // People the DPO acts on, with a device each, and a room for retention.
    for (const name of ["eve", "frank", "gina", "owner"]) {
      const session = await server.register(name, PASSWORD);
      ids[name] = session.user_id;
      ids[`${name}Token`] = session.access_token;
    }
    const created = await server.api("POST", "/_matrix/client/v3/createRoom", {
      token: ids.ownerToken,
      body: { name: "Project room", preset: "private_chat" },
    });
    assert.equal(created.status, 200, `createRoom: ${JSON.stringify(created.json)}`);
    roomId = created.json.room_id;
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test(
    "a DPO sets retention, places and releases holds, erases a person, exports and verifies the audit log",
    { timeout: TIMEOUT },
    withDiagnostics("dpo", async (t, pages) => {
      const downloads = join(dir, "downloads-dpo");
      mkdirSync(downloads, { recursive: true });
      const page = await newPage(browser, { downloads });
      pages.push(page);
      const a11y = accessibility(page);
      await signIn(page, server, "dpo", PASSWORD);

      // A DPO lands on the first DPO page and sees only DPO entries.
      await waitText(page, "h1", en["retention.title"]);
      const nav = await page.$$eval("#nav-list a", (as) => as.map((a) => a.getAttribute("href")));
      assert.deepEqual(nav, ["#/retention", "#/holds", "#/erasure", "#/exports", "#/audit", "#/processing"]);

      // Retention: 30 days at most, 1 day at least, for the room.
      await page.type("#room-policy input[name=room]", roomId);
      const [maxInput, minInput] = await page.$$("#room-policy input[type=number]");
      await maxInput.type("30");
      await minInput.type("1");
      await clickText(page, en["retention.save"], "#room-policy");
      await page.waitForFunction((want) => document.body.innerText.includes(want), {}, fill(en["retention.saved"], { room: roomId }));
      await waitReady(page);
      const policy = await pageApi(page, "GET", `rooms/${encodeURIComponent(roomId)}/retention`);
      assert.equal(policy.status, 200, JSON.stringify(policy));
      assert.equal(policy.json.requested?.max_lifetime, 30 * 86_400_000, `the policy the server holds: ${JSON.stringify(policy.json)}`);
      assert.equal(policy.json.requested?.min_lifetime, 86_400_000, `the policy the server holds: ${JSON.stringify(policy.json)}`);
      await page.waitForFunction(
        (room) => [...document.querySelectorAll("table td")].some((td) => td.textContent === room),
        { timeout: 15_000 },
        roomId,
      );
      const roomsTable = await textOf(page, "section[aria-labelledby=rooms-h]");
      assert.match(roomsTable, /30 days/, `the rooms table shows the lifetime in words: ${roomsTable}`);
      await a11y.check("retention, a room's policy saved", { within: ["section[aria-labelledby=set-h]", "#status"] });

      // A purge by hand; its summary replaces "no run yet".
      await clickText(page, en["retention.purge_now"]);
      await a11y.check("retention, a purge to confirm");
      await clickText(page, en["retention.purge_now"], ".confirm");
      await page.waitForFunction((want) => document.getElementById("status")?.textContent === want, {}, en["retention.purge_done"]);
      const purge = await textOf(page, "section[aria-labelledby=purge-h]");
      assert.ok(purge.includes(en["field.started_ts"]) && !purge.includes(en["retention.no_last"]), purge);
      await page.evaluate(() => window.scrollTo(0, 0));
      await shot(page, "retention", { doc: "retention", fullPage: true });

      // Legal holds: one on the room (stays), one on eve (released).
      await go(page, "holds", en["holds.title"]);
      const placeHold = async (scope, target, caseId, reason) => {
        await page.select("#place-hold select", scope);
        await page.type("#place-hold input[name=target]", target);
        await page.type("#place-hold input[name=case_id]", caseId);
        await page.type("#place-hold textarea", reason);
        await clickText(page, en["holds.place"], "#place-hold");
        await page.waitForFunction((c) => document.getElementById("status")?.textContent.includes(c), {}, caseId);
        await page.waitForFunction(
          (c) => [...document.querySelectorAll("section[aria-labelledby=holds-h] td")].some((td) => td.textContent === c),
          {},
          caseId,
        );
      };
      await placeHold("room", roomId, "CASE-2026-17", "Employment tribunal claim");
      await placeHold("user", ids.eve, "CASE-2026-18", "Custodian");
      const listed = await pageApi(page, "GET", "holds?include_released=true");
      assert.equal(listed.status, 200, JSON.stringify(listed));
      const eveHold = listed.json.holds.find((h) => h.case_id === "CASE-2026-18");
      assert.ok(eveHold && eveHold.target === ids.eve && eveHold.scope === "user", JSON.stringify(listed.json));
      await page.evaluate(() => window.scrollTo(0, 0));
      await shot(page, "holds", { doc: "holds" });

      // The erasure preview names the hold on eve…
      await go(page, "erasure", en["erasure.title"]);
      await page.type("#erase-user", ids.eve);
      await clickText(page, en["erasure.preview"]);
      await page.waitForSelector("#preview-h");
      let preview = await textOf(page, "section[aria-labelledby=preview-h]");
      assert.ok(preview.includes("CASE-2026-18"), `the preview names the hold: ${preview}`);
      await a11y.check("erasure preview with a hold");

      // …until it is released.
      await go(page, "holds", en["holds.title"]);
      const row = await page.waitForFunction(() =>
        [...document.querySelectorAll("section[aria-labelledby=holds-h] tr")].find((tr) => tr.textContent.includes("CASE-2026-18")),
      );
      await (await row.asElement().$("button")).click();
      await clickText(page, en["holds.release"], ".confirm:not([hidden])");
      await page.waitForFunction(
        (want) => document.getElementById("status")?.textContent === want,
        {},
        fill(en["holds.released_ok"], { case: "CASE-2026-18" }),
      );
      const holdsText = await textOf(page, "section[aria-labelledby=holds-h]");
      assert.ok(holdsText.includes(en["holds.active"]), `the room hold stays in force: ${holdsText}`);
      assert.match(holdsText, /Released by/, holdsText);
      const released = (await pageApi(page, "GET", "holds?include_released=true")).json.holds.find((h) => h.case_id === "CASE-2026-18");
      assert.ok(released.released_ts, `released: ${JSON.stringify(released)}`);

      // Erase eve: preview without holds, confirmation, receipt.
      await go(page, "erasure", en["erasure.title"]);
      await page.type("#erase-user", ids.eve);
      await clickText(page, en["erasure.preview"]);
      await page.waitForSelector("#preview-h");
      preview = await textOf(page, "section[aria-labelledby=preview-h]");
      assert.ok(!preview.includes("CASE-2026-18"), `a released hold is not listed: ${preview}`);
      assert.ok(preview.includes(en["erasure.deletes"]), preview);
      const deletes = await page.$$eval("ul.deletes li", (lis) => lis.length);
      assert.ok(deletes > 0, "the preview lists what will be deleted");
      // A wrong confirmation is refused in the page.
      await page.type("#erase-confirm", "@someone-else:localhost");
      await clickText(page, en["erasure.erase"]);
      await page.waitForFunction((want) => document.body.innerText.includes(want), {}, fill(en["erasure.mismatch"], { user: ids.eve }));
      await a11y.check("erasure confirmation, refused", { narrow: true });
      await page.$eval("#erase-confirm", (el) => {
        el.value = "";
      });
      await page.type("#erase-confirm", ids.eve);
      await clickText(page, en["erasure.erase"]);
      await page.waitForSelector("#receipt-h");
      const receipt = await textOf(page, "section[aria-labelledby=receipt-h]");
      assert.ok(receipt.includes(fill(en["erasure.done"], { user: ids.eve })), receipt);
      assert.ok(receipt.includes(en["field.pseudonym"]), `the receipt shows the pseudonym: ${receipt}`);
      // The categories with nothing in them, unfolded.
      await page.$eval("section[aria-labelledby=receipt-h]", (el) => el.querySelector("details")?.setAttribute("open", ""));
      await a11y.check("erasure receipt", { narrow: true });
      await page.$eval("#receipt-h", (el) => el.scrollIntoView({ block: "start" }));
      await shot(page, "erasure-receipt", { doc: "erasure-receipt", fullPage: true });
      await clickText(page, en["erasure.download_receipt"]);
      const receiptJson = JSON.parse((await downloaded(downloads, "erasure-receipt-eve.json")).toString("utf8"));
      assert.equal(receiptJson.user_id, ids.eve, JSON.stringify(receiptJson));
      // The account is gone.
      assert.notEqual((await server.login("eve", PASSWORD)).status, 200, "eve can no longer sign in");

      // A sealed subject-access export of frank.
      await go(page, "exports", en["exports.title"]);
      await page.type("#export-form input[name=user]", ids.frank);
      await page.type("#export-form input[name=recipient_key]", recipientKey);
      await clickText(page, en["exports.create"]);
      await page.waitForSelector("#export-download");
      await a11y.check("exports, a sealed export ready", { within: ["section[aria-labelledby=export-h]", "#status"] });
      await shot(page, "exports");
      await page.click("#export-download");
      const sealed = await downloaded(downloads, "export-frank.sealed");
      assert.ok(sealed.length > 100, `the sealed export has ${sealed.length} bytes`);
      assert.throws(() => JSON.parse(sealed.toString("utf8")), "a sealed export is not readable JSON");
      assert.ok(!sealed.includes(Buffer.from(ids.frank)), "the sealed export does not show the user id in the clear");
      // It opens with the recipient's secret key.
      writeFileSync(join(dir, "export-frank.sealed"), sealed);
      const opened = JSON.parse(server.cli("admin", "open-export", join(dir, "export-frank.sealed"), "--key", join(dir, "recipient.key")));
      assert.ok(JSON.stringify(opened).includes(ids.frank), "the opened export is about frank");

      // The audit log verifies in the browser…
      await go(page, "audit", en["audit.title"]);
      const key = await page.$eval("#verifier-key", (el) => el.value);
      assert.match(key, /\+/, `a verifier key: ${key}`);
      await page.click("#verify-server");
      await page.waitForSelector("#verify-ok, #verify-fail, #verify-unavailable:not([hidden])", { timeout: 30_000 });
      assert.ok(!(await page.$("#verify-unavailable:not([hidden])")), "the server must serve the verifier (assets/audit_verify.wasm)");
      const ok = await page.$("#verify-ok");
      assert.ok(ok, `verification failed: ${await textOf(page, "#verify-result")}`);
      const remembered = await page.evaluate((k) => localStorage.getItem(`cloister.console.trusted.${k}`), key);
      assert.ok(remembered && remembered.split("\n").length > 2, `the checkpoint is remembered: ${remembered}`);
      await waitText(page, "#trusted-line", fill(en["audit.trusted"], { size: Number(remembered.split("\n")[1]).toLocaleString("en") }));
      await page.$eval("#verify-result", (el) => el.scrollIntoView({ block: "end" }));
      await a11y.check("audit, verified", { within: VERIFY });
      await shot(page, "audit-verified", { doc: "audit-verified" });

      // …a copy with one entry changed fails…
      const exported = await pageApi(page, "GET", "audit/export");
      assert.equal(exported.status, 200);
      const original = exported.json;
      assert.ok(original.entries.length >= 3, `entries: ${original.entries.length}`);
      const altered = structuredClone(original);
      altered.entries[1].action = altered.entries[1].action === "login" ? "erasure" : "login";
      const alteredPath = join(dir, "audit-altered.json");
      writeFileSync(alteredPath, JSON.stringify(altered));
      const verifyFile = async (path) => {
        await page.$eval("#verify-result", (el) => el.replaceChildren());
        const input = await page.$("#verify-file");
        await input.uploadFile(path);
        await page.click("#verify-file-button");
        await page.waitForSelector("#verify-result #verify-ok, #verify-result #verify-fail", { timeout: 30_000 });
        return { failed: Boolean(await page.$("#verify-fail")), text: await textOf(page, "#verify-result") };
      };
      let result = await verifyFile(alteredPath);
      assert.ok(result.failed, `an altered entry must fail: ${result.text}`);
      assert.ok(result.text.toLowerCase().includes(en["audit.fail_title"].toLowerCase()), result.text);
      const failHeading = await page.$eval("#verify-fail h3", (el) => getComputedStyle(el).textTransform);
      assert.equal(failHeading, "uppercase", "a failure is shown prominently");
      await a11y.check("audit, verification failed", { narrow: true, within: VERIFY });
      await page.$eval("#verify-result", (el) => el.scrollIntoView({ block: "end" }));
      await shot(page, "audit-tampered", { doc: "audit-tampered" });

      // …and so does one cut back to its first entry, against the remembered checkpoint.
      const cut = structuredClone(original);
      cut.entries = cut.entries.slice(0, 1);
      cut.checkpoints = cut.checkpoints.filter((c) => Number(c.note.split("\n")[1]) <= 1);
      const cutPath = join(dir, "audit-cut.json");
      writeFileSync(cutPath, JSON.stringify(cut));
      result = await verifyFile(cutPath);
      assert.ok(result.failed, `a cut-back log must fail against the remembered checkpoint: ${result.text}`);
      assert.match(result.text, /truncated|rolled back|fewer/i, result.text);
      // The untouched export verifies, and moves the remembered checkpoint on.
      const originalPath = join(dir, "audit-original.json");
      writeFileSync(originalPath, JSON.stringify(original));
      result = await verifyFile(originalPath);
      assert.ok(!result.failed, `the untouched export verifies: ${result.text}`);
      // A witness outside the server: once its cosignature is required, the
      // server's checkpoints (which no witness cosigned here) no longer pass.
      await page.click("details.witnesses summary");
      await page.type("#witness-keys", witnessKey("dpo.example/witness"));
      result = await verifyFile(originalPath);
      assert.ok(result.failed, `a required witness cosignature is missing: ${result.text}`);
      assert.match(result.text, /0 of the 1 witness cosignatures required/, result.text);
      const keptWitnesses = await page.evaluate((k) => localStorage.getItem(`cloister.console.witnesses.${k}`), key);
      assert.ok(keptWitnesses?.includes("dpo.example/witness"), `the witness keys are kept: ${keptWitnesses}`);
      await page.$eval("#witness-keys", (el) => {
        el.value = "";
      });
      result = await verifyFile(originalPath);
      assert.ok(!result.failed, `without a witness requirement it verifies again: ${result.text}`);
      // Forgetting the checkpoint.
      await clickText(page, en["audit.forget"]);
      await a11y.check("audit, witnesses open, forgetting to confirm", { within: VERIFY });
      await clickText(page, en["audit.forget"], ".confirm:not([hidden])");
      await waitText(page, "#trusted-line", en["audit.no_trusted"]);
      assert.equal(await page.evaluate((k) => localStorage.getItem(`cloister.console.trusted.${k}`), key), null);

      // The entries, filtered by action.
      await page.select("#audit-filter select", "hold_set");
      await clickText(page, en["audit.apply"], "#audit-filter");
      await page.waitForFunction(
        (want) => {
          const cells = [...document.querySelectorAll("section[aria-labelledby=entries-h] tbody tr td:nth-child(3)")];
          return cells.length > 0 && cells.every((td) => td.textContent === want);
        },
        { timeout: 15_000 },
        en["audit.action.hold_set"],
      );
      const holdRows = await page.$$eval("section[aria-labelledby=entries-h] tbody tr", (trs) => trs.length);
      assert.equal(holdRows, 2, "two holds were placed");
      await shot(page, "audit-entries", { fullPage: true });

      // The record of processing, with its JSON.
      await go(page, "processing", en["processing.title"]);
      const record = await textOf(page, "#page");
      assert.ok(record.includes(en["processing.data_categories"]), record.slice(0, 500));
      assert.ok(record.includes("CASE-2026-17"), "the record lists the active hold's case");
      const link = await page.$eval("a[download='processing-record.json']", (a) => a.href);
      assert.match(link, /^blob:/);
      await shot(page, "processing");
      await page.emulateMediaType("print");
      await shot(page, "processing-print", { fullPage: true });
      await page.emulateMediaType(null);
      assert.deepEqual(page.problems.filter((p) => !/HTTP 401 GET .*session/.test(p)), [], "no errors in the page");
      a11y.done();
    }),
  );

  test(
    "an operator creates a user and a registration token, and manages the user's devices and account",
    { timeout: TIMEOUT },
    withDiagnostics("operator", async (t, pages) => {
      const page = await newPage(browser);
      pages.push(page);
      const a11y = accessibility(page);
      await signIn(page, server, "op", PASSWORD);
      await waitText(page, "h1", en["users.title"]);
      const nav = await page.$$eval("#nav-list a", (as) => as.map((a) => a.getAttribute("href")));
      assert.deepEqual(nav, ["#/users", "#/tokens", "#/health"]);

      // Create a user.
      await page.type("#create-user input[name=localpart]", "newbie");
      await page.type("#create-user input[name=password]", PASSWORD);
      await clickText(page, en["users.create"], "#create-user");
      const newbie = "@newbie:localhost";
      await page.waitForFunction((want) => document.getElementById("status")?.textContent === want, {}, fill(en["users.created_ok"], { user: newbie }));
      await page.waitForFunction((u) => [...document.querySelectorAll("table a")].some((a) => a.textContent === u), {}, newbie);
      await a11y.check("users, a user created", { within: ["section[aria-labelledby=create-h]", "#status"] });
      await shot(page, "users", { doc: "users" });
      // The account works, and its sign-in adds a device.
      const login = await server.login("newbie", PASSWORD);
      assert.equal(login.status, 200, JSON.stringify(login.json));

      // Its page: the device, signed out; a new password; deactivation.
      await go(page, `users/${encodeURIComponent(newbie)}`, fill(en["user.title"], { user: newbie }));
      await page.waitForFunction((d) => document.body.innerText.includes(d), {}, login.json.device_id);
      await a11y.check("a user's page with a device", { narrow: true });
      await shot(page, "user");
      await clickText(page, en["user.sign_out_device"]);
      await clickText(page, en["user.sign_out_device"], ".confirm:not([hidden])");
      await page.waitForFunction((want) => document.getElementById("status")?.textContent === want, {}, fill(en["user.device_signed_out"], { device: login.json.device_id }));
      await waitText(page, "section[aria-labelledby=devices-h] p", en["user.no_devices"]);
      const whoami = await server.api("GET", "/_matrix/client/v3/account/whoami", { token: login.json.access_token });
      assert.equal(whoami.status, 401, "the signed-out device's token no longer works");

      await page.type("section[aria-labelledby=reset-h] input[type=password]", "another-password-2");
      await clickText(page, en["user.reset"]);
      await page.waitForFunction((want) => document.getElementById("status")?.textContent === want, {}, fill(en["user.reset_ok"], { user: newbie }));
      assert.equal((await server.login("newbie", "another-password-2")).status, 200, "the new password works");

      await clickText(page, en["user.deactivate"]);
      await clickText(page, en["user.deactivate"], ".confirm:not([hidden])");
      await waitText(page, "section[aria-labelledby=deact-h] p", en["user.is_deactivated"]);
      await a11y.check("a user's page, deactivated", { within: ["section[aria-labelledby=deact-h]", "#status"] });
      assert.notEqual((await server.login("newbie", "another-password-2")).status, 200, "a deactivated account cannot sign in");

      // A registration token, shown once.
      await go(page, "tokens", en["tokens.title"]);
      const [uses, hours] = await page.$$("#create-token input");
      await uses.type("2");
      await hours.type("24");
      await clickText(page, en["tokens.create"], "#create-token");
      await page.waitForSelector("#new-token");
      const token = await page.$eval("#new-token", (el) => el.textContent);
      assert.ok(token.length >= 8, `a token: ${token}`);
      assert.ok((await textOf(page, "#page")).includes(en["tokens.shown_once"]), "the page says the token is shown once");
      const tokens = await pageApi(page, "GET", "registration_tokens");
      assert.equal(tokens.status, 200);
      const made = tokens.json.tokens.find((k) => k.uses_allowed === 2);
      assert.ok(made && made.expiry_ts > Date.now(), JSON.stringify(tokens.json));
      assert.ok(!JSON.stringify(tokens.json).includes(token), "the list does not carry the token itself");
      await page.waitForFunction((id) => document.body.innerText.includes(id), {}, made.id);
      await a11y.check("tokens, a new token shown once", { within: ["section[aria-labelledby=new-token-h]", "#status"] });
      await shot(page, "tokens", { doc: "tokens" });
      // Shown once: not after coming back to the page.
      await go(page, "health", en["health.title"]);
      await go(page, "tokens", en["tokens.title"]);
      assert.ok(!(await textOf(page, "#page")).includes(token), "the token is not shown again");
      // Deleting it.
      const row = await page.waitForFunction(
        (id) => [...document.querySelectorAll("tr")].find((tr) => tr.textContent.includes(id)),
        {},
        made.id,
      );
      await (await row.asElement().$("button")).click();
      await clickText(page, en["tokens.delete"], ".confirm:not([hidden])");
      await page.waitForFunction((want) => document.getElementById("status")?.textContent === want, {}, fill(en["tokens.deleted"], { id: made.id }));

      // Health at a glance.
      await go(page, "health", en["health.title"]);
      const health = await textOf(page, "#page");
      for (const label of ["field.version", "field.users", "field.database", "field.audit_entries"]) {
        assert.ok(health.includes(en[label]), `health shows ${en[label]}: ${health}`);
      }
      await shot(page, "health");
      assert.deepEqual(page.problems.filter((p) => !/HTTP 401 GET .*session/.test(p)), [], "no errors in the page");
      a11y.done();
    }),
  );

  test(
    "each role reaches only its own pages, in the browser and at the API",
    { timeout: TIMEOUT },
    withDiagnostics("roles", async (t, pages) => {
      const dpo = await newPage(browser);
      const op = await newPage(browser);
      pages.push(dpo, op);
      await signIn(dpo, server, "dpo", PASSWORD);
      await signIn(op, server, "op", PASSWORD);
      const a11y = accessibility(dpo);
      const role = { dpo: en["role.dpo"], operator: en["role.operator"] };
      for (const [page, mine] of [
        [dpo, "dpo"],
        [op, "operator"],
      ]) {
        const nav = await page.$$eval("#nav-list a", (as) => as.map((a) => a.getAttribute("href")));
        for (const p of PAGES) {
          assert.equal(nav.includes(`#/${p.path}`), p.role === mine, `${mine}: navigation entry for ${p.path}`);
          await go(page, p.path, en[p.title]);
          const refused = await page.$("#not-allowed");
          assert.equal(Boolean(refused), p.role !== mine, `${mine} on #/${p.path}: refusal shown?`);
          if (refused) {
            assert.equal(await page.$eval("#not-allowed", (el) => el.textContent), fill(en["page.not_allowed"], { role: role[p.role] }));
          }
        }
        await go(page, mine === "dpo" ? "users" : "retention");
        if (mine === "dpo") await a11y.check("another role's page refused");
        await shot(page, `refused-${mine}`);
      }
      await go(dpo, "no-such-page", en["notfound.title"]);
      await a11y.check("no such page");
      a11y.done();
      // The server refuses as well.
      for (const path of ["users?q=&limit=50", "registration_tokens", "health", `users/${encodeURIComponent(ids.frank)}`]) {
        const answer = await pageApi(dpo, "GET", path);
        assert.equal(answer.status, 403, `DPO GET ${path}: ${JSON.stringify(answer)}`);
        assert.equal(answer.json?.errcode, "M_FORBIDDEN");
      }
      for (const path of ["retention", "holds?include_released=true", "audit/entries?limit=10", "audit/key", "processing", `users/${encodeURIComponent(ids.frank)}/erasure`]) {
        const answer = await pageApi(op, "GET", path);
        assert.equal(answer.status, 403, `operator GET ${path}: ${JSON.stringify(answer)}`);
        assert.equal(answer.json?.errcode, "M_FORBIDDEN");
      }
      // Changes too, even with a valid CSRF token.
      const csrf = (await pageApi(dpo, "GET", "session")).json.csrf_token;
      const create = await pageApi(dpo, "POST", "users", { body: { localpart: "sneaky", password: PASSWORD, admin: true }, csrf });
      assert.equal(create.status, 403, `a DPO cannot create users: ${JSON.stringify(create)}`);
      const opCsrf = (await pageApi(op, "GET", "session")).json.csrf_token;
      const hold = await pageApi(op, "POST", "holds", { body: { scope: "room", target: roomId, case_id: "X", reason: "Y" }, csrf: opCsrf });
      assert.equal(hold.status, 403, `an operator cannot place holds: ${JSON.stringify(hold)}`);
    }),
  );

  test(
    "every page in English, German, Spanish and Catalan, and at 360 px, and axe-core's WCAG 2.1 AA rules on each",
    { timeout: TIMEOUT * 2 },
    withDiagnostics("languages", async (t, pages) => {
      const page = await newPage(browser);
      pages.push(page);
      await signIn(page, server, "both", PASSWORD);
      // A room policy of 30 days, for a localized duration on the retention page.
      const csrf = (await pageApi(page, "GET", "session")).json.csrf_token;
      const put = await pageApi(page, "PUT", `rooms/${encodeURIComponent(roomId)}/retention`, {
        body: { max_lifetime: 30 * 86_400_000 },
        csrf,
      });
      assert.equal(put.status, 200, JSON.stringify(put));
      const thirtyDays = { en: "30 days", de: "30 Tage", es: "30 días", ca: "30 dies" };
      // axe-core's WCAG 2.1 AA check: every page, both roles', in two languages, at both widths.
      const a11y = accessibility(page);

      for (const lang of LANGS) {
        const catalog = CATALOGS[lang];
        await page.select("#lang", lang);
        await page.waitForFunction((l) => document.documentElement.lang === l, {}, lang);
        await waitReady(page);
        for (const p of PAGES) {
          await go(page, p.path, catalog[p.title]);
          assert.equal(await page.evaluate(() => document.documentElement.lang), lang);
          const navText = await page.$eval(`#nav-list a[href="#/${p.path}"]`, (a) => a.textContent);
          assert.equal(navText, catalog[p.nav], `${lang}: navigation entry for ${p.path}`);
          assert.equal(await page.$eval("label[for=lang]", (el) => el.textContent), catalog["app.language"]);
          assert.deepEqual(await rawKeys(page), [], `${lang} #/${p.path} shows catalog keys instead of text`);
          if (p.path === "retention") {
            const text = await textOf(page, "section[aria-labelledby=rooms-h]");
            assert.ok(text.includes(thirtyDays[lang]), `${lang}: the room's lifetime reads ${thirtyDays[lang]}: ${text}`);
          }
          if (AXE_LANGS.includes(lang)) await a11y.check(`${lang} #/${p.path}`);
          await shot(page, `${p.path}-${lang}`);
        }
        await page.evaluate(() => {
          location.hash = "#/users";
        });
      }

      // The choice is remembered.
      await page.reload({ waitUntil: "domcontentloaded" });
      await waitReady(page);
      assert.equal(await page.evaluate(() => document.documentElement.lang), "ca");
      await waitText(page, "h1", CATALOGS.ca["users.title"]);

      // 360 px wide: no sideways scrolling on any page, in English and in German's longer words.
      await page.setViewport({ width: 360, height: 740 });
      for (const lang of AXE_LANGS) {
        await page.select("#lang", lang);
        await page.waitForFunction((l) => document.documentElement.lang === l, {}, lang);
        await waitReady(page);
        for (const p of PAGES) {
          await go(page, p.path, CATALOGS[lang][p.title]);
          const width = await page.evaluate(() => document.documentElement.scrollWidth);
          assert.ok(width <= 360, `${lang}: #/${p.path} is ${width} px wide at a 360 px viewport`);
          await a11y.check(`${lang} 360 px #/${p.path}`);
          if (lang === "en") await shot(page, `${p.path}-360`, { fullPage: true });
        }
      }
      // A phone, in German, for the docs.
      await page.setViewport({ width: 390, height: 844 });
      await page.select("#lang", "de");
      await page.waitForFunction(() => document.documentElement.lang === "de");
      await go(page, "holds", CATALOGS.de["holds.title"]);
      await page.evaluate(() => document.activeElement?.blur());
      await shot(page, "holds-390-de", { doc: "mobile-holds-de" });
      await page.select("#lang", "en");
      a11y.done();
    }),
  );

  test(
    "without the WebAssembly verifier the audit page says that browser verification is unavailable",
    { timeout: TIMEOUT },
    withDiagnostics("no-wasm", async (t, pages) => {
      const page = await newPage(browser);
      pages.push(page);
      // As a build without the wasm32 target serves it: 404. And, for the
      // sign-in page's single sign-on buttons, a server with two identity providers.
      await page.setRequestInterception(true);
      page.on("request", (request) => {
        if (request.url().endsWith("/assets/audit_verify.wasm")) {
          request.respond({ status: 404, contentType: "application/json", body: '{"errcode":"M_NOT_FOUND","error":"No such console file"}' });
        } else if (request.method() === "GET" && new URL(request.url()).pathname === "/_matrix/client/v3/login") {
          const identity_providers = [
            { id: "oidc-uni", name: "University login" },
            { id: "saml-staff", name: "Staff SAML" },
          ];
          const flows = [{ type: "m.login.password" }, { type: "m.login.sso", identity_providers }];
          request.respond({ status: 200, contentType: "application/json", body: JSON.stringify({ flows }) });
        } else {
          request.continue();
        }
      });
      const a11y = accessibility(page);
      await page.goto(consoleUrl(server), { waitUntil: "domcontentloaded" });
      await page.waitForSelector("ul.sso a.button", { visible: true });
      await a11y.check("sign-in with single sign-on");
      await signIn(page, server, "dpo", PASSWORD);
      await go(page, "audit", en["audit.title"]);
      await page.waitForSelector("#verify-unavailable:not([hidden])");
      assert.equal(await page.$eval("#verify-unavailable", (el) => el.textContent), en["audit.unavailable"]);
      assert.equal(await page.$eval("#verify-server", (el) => el.disabled), true);
      assert.equal(await page.$eval("#verify-file-button", (el) => el.disabled), true);
      // The rest of the page works.
      await page.waitForSelector("section[aria-labelledby=entries-h] table");
      await a11y.check("audit without the verifier", { within: VERIFY });
      a11y.done();
      await shot(page, "audit-no-wasm");
    }),
  );

  test(
    "the erasure flow with the keyboard alone",
    { timeout: TIMEOUT },
    withDiagnostics("keyboard", async (t, pages) => {
      const downloads = join(dir, "downloads-keyboard");
      mkdirSync(downloads, { recursive: true });
      const page = await newPage(browser, { downloads });
      pages.push(page);
      const kb = page.keyboard;
      await page.goto(consoleUrl(server), { waitUntil: "domcontentloaded" });
      await page.waitForSelector("#signin input[name=user]", { visible: true });

      // The skip link comes first.
      await kb.press("Tab");
      assert.equal((await focused(page)).id, "skip");
      // Sign in.
      await tabTo(page, "#signin input[name=user]");
      await kb.type("dpo");
      await kb.press("Tab");
      await kb.type(PASSWORD);
      await kb.press("Enter");
      await page.waitForSelector("#nav:not([hidden]) #nav-list a");
      await waitReady(page);
      // Focus is on the heading of the first page; back up into the navigation.
      await page.waitForFunction(() => document.activeElement?.tagName === "H1");
      for (let i = 0; i < 20; i += 1) {
        await kb.down("Shift");
        await kb.press("Tab");
        await kb.up("Shift");
        if (await page.evaluate(() => document.activeElement?.getAttribute("href") === "#/erasure")) break;
      }
      assert.equal(await page.evaluate(() => document.activeElement?.getAttribute("href")), "#/erasure");
      const ring = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
      assert.notEqual(ring, "none", "the focused link shows a focus ring");
      await kb.press("Enter");
      await page.waitForFunction((want) => document.activeElement?.tagName === "H1" && document.activeElement.textContent === want, {}, en["erasure.title"]);
      await waitReady(page);

      // Whom: type, Enter.
      await kb.press("Tab");
      assert.equal((await focused(page)).id, "erase-user");
      await kb.type(ids.gina);
      await kb.press("Enter");
      await page.waitForFunction(() => document.activeElement?.id === "preview-h", { timeout: 15_000 });
      const preview = await textOf(page, "section[aria-labelledby=preview-h]");
      assert.ok(preview.includes(fill(en["erasure.preview_title"], { user: ids.gina })), preview);

      // Confirm: type the id again, Enter.
      await tabTo(page, "#erase-confirm", 10);
      await kb.type(ids.gina);
      await kb.press("Enter");
      await page.waitForFunction(() => document.activeElement?.id === "receipt-h", { timeout: 15_000 });
      const receipt = await textOf(page, "section[aria-labelledby=receipt-h]");
      assert.ok(receipt.includes(fill(en["erasure.done"], { user: ids.gina })), receipt);

      // The receipt downloads with the keyboard too.
      await tabTo(page, "a[download]", 10);
      await kb.press("Enter");
      const saved = JSON.parse((await downloaded(downloads, "erasure-receipt-gina.json")).toString("utf8"));
      assert.equal(saved.user_id, ids.gina);
      await shot(page, "erasure-keyboard");
    }),
  );

  test(
    "sign-in refusals, signing out, and a session that ends",
    { timeout: TIMEOUT },
    withDiagnostics("session", async (t, pages) => {
      const page = await newPage(browser);
      pages.push(page);
      await page.goto(consoleUrl(server), { waitUntil: "domcontentloaded" });
      await page.waitForSelector("#signin input[name=user]", { visible: true });
      const a11y = accessibility(page);
      await a11y.check("sign-in", { narrow: true });
      await shot(page, "signin");
      const attempt = async (user, password) => {
        await page.$eval("#signin input[name=user]", (el) => {
          el.value = "";
        });
        await page.type("#signin input[name=user]", user);
        await page.type("#signin input[name=password]", password);
        await page.click("#signin button[type=submit]");
        await page.waitForSelector("#signin .error:not([hidden])");
        return page.$eval("#signin .error", (el) => el.textContent);
      };
      assert.ok((await attempt("dpo", "wrong password")).startsWith(en["signin.refused"]));
      await a11y.check("sign-in refused");
      await page.$eval("#signin .error", (el) => {
        el.hidden = true;
      });
      assert.ok((await attempt("norole", PASSWORD)).startsWith(en["signin.refused"]), "an account without a console role is refused");
      await page.$eval("#signin .error", (el) => {
        el.hidden = true;
      });
      // A plain Matrix user with no console role is refused too.
      assert.ok((await attempt("frank", PASSWORD)).startsWith(en["signin.refused"]));

      // Signed in with the full user id; the cookie is HttpOnly, Secure and SameSite=Strict.
      await page.$eval("#signin input[name=user]", (el) => {
        el.value = "";
      });
      await page.type("#signin input[name=user]", "@dpo:localhost");
      await page.type("#signin input[name=password]", PASSWORD);
      await page.click("#signin button[type=submit]");
      await page.waitForSelector("#nav:not([hidden]) #nav-list a");
      await waitReady(page);
      assert.equal(await page.evaluate(() => document.cookie), "", "scripts cannot see the session cookie");
      const cookies = await page.ownContext.cookies();
      const session = cookies.filter((c) => c.httpOnly);
      assert.ok(session.length >= 1, `an HttpOnly session cookie: ${JSON.stringify(cookies)}`);
      for (const c of session) {
        assert.equal(c.secure, true, `Secure: ${JSON.stringify(c)}`);
        assert.equal(c.sameSite, "Strict", `SameSite=Strict: ${JSON.stringify(c)}`);
      }
      // The page runs under the strict CSP.
      const response = await fetch(consoleUrl(server));
      const csp = response.headers.get("content-security-policy") ?? "";
      assert.match(csp, /default-src 'none'/, csp);
      assert.match(csp, /script-src 'self'/, csp);
      assert.doesNotMatch(csp, /unsafe-inline/, csp);

      // When the session is gone, the next action shows the sign-in page and says why.
      await page.ownContext.deleteCookie(...session);
      await go(page, "holds");
      await page.waitForSelector("#signin");
      await page.waitForFunction((want) => document.getElementById("page").innerText.includes(want), {}, en["signin.ended"]);
      await a11y.check("sign-in after the session ended");
      await shot(page, "session-ended");

      // Signing in again returns to the page; signing out ends the session at the server.
      await page.type("#signin input[name=user]", "dpo");
      await page.type("#signin input[name=password]", PASSWORD);
      await page.click("#signin button[type=submit]");
      await waitText(page, "h1", en["holds.title"]);
      await waitReady(page);
      await page.click("#sign-out");
      await page.waitForSelector("#signin");
      await waitText(page, "#status", en["signin.signed_out"]);
      const after = await pageApi(page, "GET", "session");
      assert.equal(after.status, 401, `signed out: ${JSON.stringify(after)}`);
      a11y.done();
    }),
  );
}

/** A witness's public key as `cloister audit witness` prints it
 * (`<name>+<hex key id>+<base64(0x04 || Ed25519 key)>`, C2SP). */
function witnessKey(name) {
  const { publicKey } = generateKeyPairSync("ed25519");
  const raw = Buffer.from(publicKey.export({ format: "jwk" }).x, "base64url");
  const blob = Buffer.concat([Buffer.from([4]), raw]);
  const id = createHash("sha256").update(Buffer.concat([Buffer.from(`${name}\n`), blob])).digest().subarray(0, 4);
  return `${name}+${id.toString("hex")}+${blob.toString("base64")}`;
}
