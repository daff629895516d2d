// Single sign-on as Element Web does it, through matrix-js-sdk (Rust
// crypto): the login flows name the provider, the browser goes to
// getSsoLoginUrl, signs in at a real OpenID provider (oidc-provider, from
// tests/oidc-provider) and comes back to the app with a loginToken, which the
// app trades with loginWithToken. Two people signed in that way then exchange
// end-to-end-encrypted messages, and the token cannot be used twice.
//
// The server must know the provider when it starts, so this file starts its
// own provider and its own server (CLOISTER_BIN, a built `cloister`) rather
// than using the shared one at CLOISTER_URL.
//
// Run: CLOISTER_BIN=target/debug/cloister node --test tests/js/sso-login.test.mjs
// (scripts/test-js.sh exports CLOISTER_BIN and installs tests/oidc-provider.)
// CLOISTER_JS_VERBOSE=1 keeps the SDK's debug/info logging.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const BIN = process.env.CLOISTER_BIN ?? "";
const PROVIDER_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "oidc-provider");
/** Element's address: on sso.client_allowlist, so the token comes back without a confirmation page. */
const APP = "http://element.example/";
const SETUP_TIMEOUT_MS = 120_000;
const TEST_TIMEOUT_MS = 60_000;

// The redirect URIs registered at the provider name the server's port, so
// the port is chosen before either starts.
const PORT = await new Promise((resolve, reject) => {
  const probe = createServer();
  probe.on("error", reject);
  probe.listen(0, "127.0.0.1", () => {
    const { port } = probe.address();
    probe.close(() => resolve(port));
  });
});
const SERVER_URL = `http://127.0.0.1:${PORT}`;

// support.mjs reads CLOISTER_URL when it loads, and its clients and helpers
// must talk to this file's server (each test file runs in its own process).
process.env.CLOISTER_URL = SERVER_URL;
const {
  api,
  randomSuffix,
  recordingFetch,
  sdk,
  sharedEncryptedRoom,
  sleep,
  startClient,
  step,
  stopClients,
  waitForDecrypted,
  waitForDeviceKeys,
} = await import("./support.mjs");

// ---------------------------------------------------------------------------
// The provider and the server, with their output kept for failure messages

const children = [];

function start(label, command, args, options) {
  const child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"], ...options });
  const entry = { label, child, output: "", ended: null };
  const keep = (chunk) => {
    entry.output = (entry.output + chunk).slice(-60_000);
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  child.on("error", (e) => (entry.ended = `could not run ${command}: ${e.message}`));
  child.on("exit", (code, signal) => (entry.ended ??= `exited with ${signal ?? `status ${code}`}`));
  children.push(entry);
  return entry;
}

/** Polls `check` until it returns a truthy value; fails at once if `entry`'s process ended. */
async function whileRunning(entry, check, what, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (entry.ended) throw new Error(`${entry.label} ${entry.ended} before ${what}`);
    const value = await check().catch(() => null);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${entry.label}: no ${what} within ${timeoutMs / 1000} s`);
    await sleep(100);
  }
}

/** Ends the provider and the server; SIGKILL for whichever ignores SIGTERM. */
async function stopChildren() {
  await Promise.all(
    children.map(async ({ child, ended }) => {
      if (ended) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    }),
  );
}

/** The last lines of the provider's and the server's output. */
function logs() {
  return children
    .map(({ label, output }) => `\n---- ${label} (last 60 lines) ----\n${output.split("\n").slice(-60).join("\n")}`)
    .join("");
}

/** A step of setup or a test whose failure carries both logs. */
function withLogs(fn) {
  return async (...args) => {
    try {
      return await fn(...args);
    } catch (e) {
      throw new Error(`${e?.message ?? e}${logs()}`, { cause: e });
    }
  };
}

async function startProvider() {
  const provider = start("oidc-provider", process.execPath, ["provider.mjs"], {
    cwd: PROVIDER_DIR,
    env: {
      ...process.env,
      OIDC_PORT: "0",
      OIDC_REDIRECT_URI: `${SERVER_URL}/_cloister/client/oidc/callback`,
      OIDC_BACKCHANNEL_LOGOUT_URI: `${SERVER_URL}/_cloister/client/oidc/backchannel_logout`,
      // Node exits when this process does, however it ends.
      OIDC_EXIT_ON_STDIN_EOF: "1",
    },
  });
  return whileRunning(
    provider,
    async () => provider.output.match(/^ISSUER (\S+)$/m)?.[1],
    "ISSUER line (is `npm ci` done in tests/oidc-provider?)",
  );
}

async function startServer(issuer, dataDir) {
  const server = start("cloister server", BIN, ["serve"], {
    env: {
      ...process.env,
      CLOISTER_LISTEN: `127.0.0.1:${PORT}`,
      CLOISTER_PUBLIC_BASEURL: `${SERVER_URL}/`,
      CLOISTER_DATA_DIR: dataDir,
      CLOISTER_REGISTRATION: "open",
      CLOISTER_RATE_LIMIT__ENABLED: "false",
      CLOISTER_OIDC__0__ID: "keycloak",
      CLOISTER_OIDC__0__NAME: "Staff login",
      CLOISTER_OIDC__0__ISSUER: issuer,
      CLOISTER_OIDC__0__CLIENT_ID: "cloister",
      CLOISTER_OIDC__0__CLIENT_SECRET: "cloister-oidc-test-secret",
      CLOISTER_SSO__CLIENT_ALLOWLIST: JSON.stringify([APP]),
      NO_COLOR: "1",
    },
  });
  await whileRunning(server, async () => (await fetch(`${SERVER_URL}/health`)).ok, `answer to GET ${SERVER_URL}/health`);
}

// ---------------------------------------------------------------------------
// The browser: a cookie jar and redirects followed by hand

/**
 * One browser profile. oidc-provider keeps the sign-in in cookies between
 * /auth, /interaction/… and /auth/…; a fresh browser per person, because a
 * browser signed in once stays signed in at the provider.
 */
function browser() {
  const jar = new Map(); // host → Map(name → value)
  return async function visit(url) {
    const { host } = new URL(url);
    const cookies = jar.get(host) ?? new Map();
    jar.set(host, cookies);
    const headers = cookies.size ? { Cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join("; ") } : {};
    const response = await fetch(url, { redirect: "manual", headers });
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(";").map((s) => s.trim());
      const name = pair.slice(0, pair.indexOf("="));
      const expired = attributes.some(
        (a) => /^max-age=0$/i.test(a) || (/^expires=/i.test(a) && Date.parse(a.slice(8)) <= Date.now()),
      );
      if (expired) cookies.delete(name);
      else cookies.set(name, pair.slice(name.length + 1));
    }
    const location = response.headers.get("location");
    return {
      status: response.status,
      body: await response.text(),
      location: location && new URL(location, url).href,
    };
  };
}

/**
 * Signs `sub` in at the provider in a fresh browser, from Element's SSO
 * redirect URL to the redirect back to Element, which is not followed:
 * returns that URL, where Element would find its loginToken.
 */
async function signInAtProvider(ssoUrl, sub, username) {
  const next = await fetch(`${ctx.issuer}/control/next-login`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sub, claims: { preferred_username: username, name: `${username} (staff)` } }),
  });
  assert.equal(next.status, 200, `/control/next-login: ${await next.text()}`);
  const visit = browser();
  const hops = [ssoUrl];
  for (let url = ssoUrl; hops.length <= 20; ) {
    const page = await visit(url);
    if (!page.location) {
      assert.fail(`${username}'s sign-in ended at a page, not at Element: HTTP ${page.status} ${page.body.slice(0, 500)}\n  hops: ${hops.join("\n    ")}`);
    }
    hops.push(page.location);
    if (page.location.startsWith(APP)) return page.location;
    url = page.location;
  }
  assert.fail(`too many redirects:\n    ${hops.join("\n    ")}`);
}

/**
 * What Element Web does on load: the loginToken from the query string (not
 * the fragment), traded with loginWithToken, then a client for the new
 * session (the deprecated helper only half-updates the client it runs on).
 */
async function elementLogin(label, landing) {
  const url = new URL(landing);
  const token = url.searchParams.get("loginToken");
  assert.ok(
    token,
    `Element reads loginToken from the query string (location.search), and ${landing} has none` +
      (url.hash.includes("loginToken=") ? ": the server appended it after the #fragment" : ""),
  );
  const loginClient = sdk.createClient({ baseUrl: SERVER_URL, fetchFn: recordingFetch(`${label} login`) });
  const session = await step(`${label}'s loginWithToken`, () => loginClient.loginWithToken(token));
  assert.ok(session.access_token && session.device_id, `login answer lacks a token or device: ${JSON.stringify(session)}`);
  return { token, session, client: await startClient(label, session) };
}

// ---------------------------------------------------------------------------
// Setup: provider, server, and Alice and Bob signed in through it

const ctx = {};

before(
  withLogs(async () => {
    assert.ok(BIN, "set CLOISTER_BIN to a built server binary, e.g. target/debug/cloister (scripts/test-js.sh does)");
    ctx.dataDir = mkdtempSync(join(tmpdir(), "cloister-js-sso-"));
    ctx.issuer = await startProvider();
    await startServer(ctx.issuer, join(ctx.dataDir, "data"));

    // Element's login page: the provider's button comes from the flows.
    const element = sdk.createClient({ baseUrl: SERVER_URL, fetchFn: recordingFetch("element") });
    const { flows } = await step("loginFlows", () => element.loginFlows());
    const sso = flows.find((f) => f.type === "m.login.sso");
    assert.deepEqual(sso?.identity_providers, [{ id: "keycloak", name: "Staff login" }], JSON.stringify(flows));
    assert.ok(flows.some((f) => f.type === "m.login.token"), `no m.login.token in ${JSON.stringify(flows)}`);
    // Element Web's callback URL is its own address with the view to open as the fragment.
    ctx.ssoUrl = element.getSsoLoginUrl(`${APP}#/home`, "sso", "keycloak");

    ctx.alice = await elementLogin("alice", await signInAtProvider(ctx.ssoUrl, "sub-alice", "alice"));
    ctx.bob = await elementLogin("bob", await signInAtProvider(ctx.ssoUrl, "sub-bob", "bob"));
    assert.match(ctx.alice.session.user_id, /^@alice:/);
    assert.match(ctx.bob.session.user_id, /^@bob:/);

    await waitForDeviceKeys(ctx.alice.session, ctx.bob.session, "Bob");
    ctx.roomId = await sharedEncryptedRoom({
      inviter: ctx.alice.client,
      inviterLabel: "Alice",
      invitee: ctx.bob.client,
      inviteeLabel: "Bob",
      inviteeUserId: ctx.bob.session.user_id,
      createOptions: { name: "sso", preset: sdk.Preset.PrivateChat },
    });
  }),
  { timeout: SETUP_TIMEOUT_MS },
);

after(async () => {
  stopClients();
  await stopChildren();
  if (ctx.dataDir) rmSync(ctx.dataDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------
// Tests

test(
  "two people signed in through the provider exchange encrypted messages",
  { timeout: TEST_TIMEOUT_MS },
  withLogs(async () => {
    const { alice, bob, roomId } = ctx;
    const text = `hello bob, signed in with SSO ${randomSuffix()}`;
    const { event_id: eventId } = await step("Alice's encrypted sendMessage", () =>
      alice.client.sendMessage(roomId, { msgtype: "m.text", body: text }),
    );
    const event = await waitForDecrypted(bob.client, "Bob", roomId, eventId);
    assert.equal(event.getWireType(), "m.room.encrypted", "the message must have travelled encrypted");
    assert.equal(event.getContent().body, text, "Bob decrypted different plaintext");
    assert.equal(event.getSender(), alice.session.user_id);

    const replyText = `hello alice ${randomSuffix()}`;
    const { event_id: replyId } = await step("Bob's encrypted reply", () =>
      bob.client.sendMessage(roomId, {
        msgtype: "m.text",
        body: replyText,
        "m.relates_to": { "m.in_reply_to": { event_id: eventId } },
      }),
    );
    const reply = await waitForDecrypted(alice.client, "Alice", roomId, replyId);
    assert.equal(reply.getWireType(), "m.room.encrypted", "the reply must have travelled encrypted");
    assert.equal(reply.getContent().body, replyText, "Alice decrypted different plaintext");
    assert.equal(reply.getSender(), bob.session.user_id);
    assert.equal(reply.replyEventId, eventId);
  }),
);

test(
  "a login token opens one session only",
  { timeout: TEST_TIMEOUT_MS },
  withLogs(async () => {
    // A replayed redirect (browser history, a leaked URL) must not sign anyone in.
    const again = sdk.createClient({ baseUrl: SERVER_URL });
    const error = await again.loginWithToken(ctx.alice.token).then(
      (session) => assert.fail(`the spent token opened another session: ${JSON.stringify(session)}`),
      (e) => e,
    );
    assert.equal(error.httpStatus, 403, `${error}`);
    assert.equal(error.errcode, "M_FORBIDDEN", `${error}`);
    // Alice's session is unaffected.
    const { status, json } = await api("GET", "/_matrix/client/v3/account/whoami", { token: ctx.alice.session.access_token });
    assert.equal(status, 200, JSON.stringify(json));
    assert.equal(json.user_id, ctx.alice.session.user_id);
  }),
);
