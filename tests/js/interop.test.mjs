// Interop test: two real matrix-js-sdk clients (Rust crypto) exchange an
// end-to-end-encrypted message and an encrypted attachment through the
// homeserver at CLOISTER_URL, and the server is checked to hold only
// ciphertext.
//
// Run: CLOISTER_URL=http://127.0.0.1:8008 node --test tests/js/*.test.mjs
// (scripts/test-js.sh builds and starts a server and does this for you.)
// CLOISTER_JS_VERBOSE=1 keeps the SDK's debug/info logging.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { webcrypto as crypto } from "node:crypto";
import { api, decryptAttachment, encryptAttachment, randomSuffix, register } from "./support.mjs";

// The wasm crypto and the SDK log heavily; silence that before the SDK is
// loaded (it looks console methods up at call time). The SDK's warnings and
// errors are kept (first line each) and shown with a failure instead.
// CLOISTER_JS_VERBOSE=1 lets everything through.
const sdkLog = [];
if (!process.env.CLOISTER_JS_VERBOSE) {
  const keep = (level) => (...args) => {
    const text = args.map((a) => (a instanceof Error ? a.message : String(a))).join(" ");
    // Benign: the MatrixRTC manager sees room state before the room exists.
    if (/Got room state event for unknown room/.test(text)) return;
    sdkLog.push(`${level}: ${text.split("\n")[0].slice(0, 300)}`);
    if (sdkLog.length > 200) sdkLog.shift();
  };
  console.debug = () => {};
  console.info = () => {};
  console.log = () => {};
  console.warn = keep("warn");
  console.error = keep("error");
}

// matrix-js-sdk arms a 60-110 s local timeout per request and never clears
// it, which would keep this process alive long after the tests end. Long
// timers are unref'd: they still fire while the test runs, but no longer
// hold the process open once the clients are stopped.
const realSetTimeout = globalThis.setTimeout;
globalThis.setTimeout = function setTimeoutUnrefLong(callback, ms, ...args) {
  const timer = realSetTimeout(callback, ms, ...args);
  if (ms >= 10_000) timer?.unref?.();
  return timer;
};

const sdk = await import("matrix-js-sdk");

const BASE = (process.env.CLOISTER_URL ?? "").replace(/\/+$/, "");
const SETUP_TIMEOUT_MS = 90_000;
const TEST_TIMEOUT_MS = 60_000;
const STEP_TIMEOUT_MS = 30_000;

function report(message) {
  process.stderr.write(`[interop] ${message}\n`);
}

// ---------------------------------------------------------------------------
// Small utilities

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns a truthy value; fails with `describe()` after `timeoutMs`. */
async function waitFor(check, describe, timeoutMs = STEP_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) {
      const why = typeof describe === "function" ? describe() : describe;
      const cause = lastError ? `\n  last error: ${lastError.stack ?? lastError}` : "";
      throw new Error(`timed out after ${timeoutMs / 1000} s: ${why}${cause}${failedRequests()}`);
    }
    await sleep(200);
  }
}

/** Runs one SDK call; a failure names the step and lists the failed requests. */
async function step(what, fn) {
  try {
    return await fn();
  } catch (e) {
    throw new Error(`${what} failed: ${e?.message ?? e}${failedRequests()}`, { cause: e });
  }
}




// ---------------------------------------------------------------------------
// Raw HTTP, for registration and for looking at what the server stores

/** Every non-2xx answer any client got, for failure messages. */
const failures = [];

function failedRequests() {
  let text = "";
  if (failures.length > 0) {
    const shown = failures.slice(-15);
    text += `\n  failed HTTP requests so far (last ${shown.length} of ${failures.length}):\n    ${shown.join("\n    ")}`;
  }
  if (sdkLog.length > 0) {
    text += `\n  last SDK warnings and errors:\n    ${sdkLog.slice(-10).join("\n    ")}`;
  }
  return text;
}

function recordingFetch(label) {
  return async (input, init = {}) => {
    const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
    const method = init.method ?? "GET";
    let response;
    try {
      response = await fetch(input, init);
    } catch (e) {
      if (e?.name !== "AbortError") failures.push(`${label}: ${method} ${url.pathname} → network error ${e}`);
      throw e;
    }
    if (!response.ok) {
      let body = "";
      try {
        body = (await response.clone().text()).slice(0, 300);
      } catch {
        // ignore
      }
      failures.push(`${label}: ${method} ${url.pathname} → ${response.status} ${body}`);
    }
    return response;
  };
}



// ---------------------------------------------------------------------------
// matrix-js-sdk clients

/** Every client created, so that `after` stops them even when setup failed. */
const clients = [];

async function startClient(label, session) {
  const client = sdk.createClient({
    baseUrl: BASE,
    userId: session.user_id,
    accessToken: session.access_token,
    deviceId: session.device_id,
    fetchFn: recordingFetch(label),
  });
  clients.push(client);
  await step(`${label}'s initRustCrypto`, () => client.initRustCrypto({ useIndexedDB: false }));
  let lastSyncError = null;
  let state = null;
  client.on(sdk.ClientEvent.Sync, (newState, _prev, data) => {
    state = newState;
    if (newState === "ERROR") lastSyncError = data?.error;
  });
  await client.startClient({ initialSyncLimit: 20 });
  await waitFor(
    () => state === "PREPARED" || state === "SYNCING",
    () =>
      `${label}'s client never completed its first /sync (sync state ${state}` +
      `${lastSyncError ? `, last error ${lastSyncError}` : ""}). ` +
      "matrix-js-sdk needs /versions, /pushrules/, /user/{id}/filter, /capabilities, " +
      "/room_keys/version (404 M_NOT_FOUND when there is no backup), /keys/upload and /sync",
    SETUP_TIMEOUT_MS / 2,
  );
  return client;
}

/** Waits until `client` has `eventId` in `roomId`, decrypted, and returns it. */
async function waitForDecrypted(client, label, roomId, eventId) {
  let seen = null;
  return waitFor(
    () => {
      const event = client.getRoom(roomId)?.findEventById(eventId);
      seen = event ?? null;
      if (!event || event.isBeingDecrypted() || event.isDecryptionFailure()) return null;
      return event.getClearContent() ? event : null;
    },
    () => {
      if (!seen) return `${label} never received event ${eventId} in ${roomId}`;
      if (seen.isDecryptionFailure()) {
        return (
          `${label} received ${eventId} but could not decrypt it (${seen.decryptionFailureReason}: ` +
          `${seen.getContent()?.body}). Typical server causes: to-device messages not delivered, ` +
          "one-time keys not claimable, device list not tracked, missing device_one_time_keys_count"
        );
      }
      return `${label} received ${eventId} but it is not decrypted (type ${seen.getType()}, wire type ${seen.getWireType()})`;
    },
  );
}

// ---------------------------------------------------------------------------
// Matrix attachment encryption (AES-CTR-256 + SHA-256, "v2")



// ---------------------------------------------------------------------------
// Shared setup: Alice and Bob in an encrypted room

const ctx = {};

before(
  async () => {
    assert.ok(BASE, "set CLOISTER_URL to the homeserver's base URL, e.g. http://127.0.0.1:8008");
    const versions = await api("GET", "/_matrix/client/versions");
    assert.equal(versions.status, 200, `/versions: ${JSON.stringify(versions.json)}`);

    const suffix = randomSuffix();
    ctx.aliceSession = await register(`alice-${suffix}`, `alice-password-${suffix}`);
    ctx.bobSession = await register(`bob-${suffix}`, `bob-password-${suffix}`);
    ctx.alice = await startClient("alice", ctx.aliceSession);
    ctx.bob = await startClient("bob", ctx.bobSession);
    const { alice, bob, aliceSession, bobSession } = ctx;

    // Both devices publish their keys on startup; Alice must be able to see Bob's.
    await waitFor(
      async () => {
        const { status, json } = await api("POST", "/_matrix/client/v3/keys/query", {
          token: aliceSession.access_token,
          body: { device_keys: { [bobSession.user_id]: [] } },
        });
        return status === 200 && json.device_keys?.[bobSession.user_id]?.[bobSession.device_id];
      },
      "Bob's device keys never appeared in Alice's /keys/query (did /keys/upload succeed?)",
    );

    // A room with no explicit encryption: the server makes it encrypted.
    const { room_id: roomId } = await step("Alice's createRoom", () =>
      alice.createRoom({ name: "interop", preset: sdk.Preset.PrivateChat }),
    );
    ctx.roomId = roomId;
    const encryption = await api(
      "GET",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.encryption/`,
      { token: aliceSession.access_token },
    );
    assert.equal(
      encryption.status,
      200,
      `a new room must carry m.room.encryption by default: HTTP ${encryption.status} ${JSON.stringify(encryption.json)}`,
    );
    assert.equal(encryption.json.algorithm, "m.megolm.v1.aes-sha2");
    await waitFor(
      () => alice.getCrypto().isEncryptionEnabledInRoom(roomId),
      "Alice's client never saw the room's m.room.encryption state",
    );

    await step("Alice's invite", () => alice.invite(roomId, bobSession.user_id));
    await waitFor(
      () => bob.getRoom(roomId)?.getMyMembership() === "invite",
      "Bob's client never saw the invite in /sync (rooms.invite)",
    );
    await step("Bob's joinRoom", () => bob.joinRoom(roomId));
    await waitFor(
      () => alice.getRoom(roomId)?.getMember(bobSession.user_id)?.membership === "join",
      "Alice's client never saw Bob's join in /sync",
    );
    await waitFor(
      () => bob.getCrypto().isEncryptionEnabledInRoom(roomId),
      "Bob's client does not consider the room encrypted",
    );
  },
  { timeout: SETUP_TIMEOUT_MS },
);

after(async () => {
  for (const client of clients) {
    try {
      client.stopClient();
    } catch (e) {
      report(`stopping a client failed: ${e}`);
    }
  }
});

// ---------------------------------------------------------------------------
// Tests

test("an encrypted text message reaches Bob, and the server holds only ciphertext", { timeout: TEST_TIMEOUT_MS }, async () => {
  const { alice, bob, roomId, bobSession } = ctx;
  const text = `hello bob, the secret word is ${randomSuffix()}`;
  // Sending into an encrypted room needs /keys/query, /keys/claim and /sendToDevice.
  const { event_id: eventId } = await step("Alice's encrypted sendMessage", () =>
    alice.sendMessage(roomId, { msgtype: "m.text", body: text }),
  );
  assert.ok(eventId, "sendMessage returned no event id");

  const event = await waitForDecrypted(bob, "Bob", roomId, eventId);
  assert.equal(event.getWireType(), "m.room.encrypted", "the event must have travelled encrypted");
  assert.equal(event.getType(), "m.room.message");
  assert.equal(event.getContent().body, text, "Bob decrypted different plaintext");
  assert.equal(event.getSender(), ctx.aliceSession.user_id);

  // What the server hands out for the room: ciphertext only.
  const { status, json } = await api(
    "GET",
    `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=50`,
    { token: bobSession.access_token },
  );
  assert.equal(status, 200, `/messages: ${JSON.stringify(json)}`);
  const stored = json.chunk?.find((e) => e.event_id === eventId);
  assert.ok(stored, `/messages does not contain ${eventId}`);
  assert.equal(stored.type, "m.room.encrypted", "the server stored a non-encrypted type");
  assert.equal(stored.content.algorithm, "m.megolm.v1.aes-sha2");
  assert.ok(stored.content.ciphertext, "stored event has no ciphertext");
  assert.equal(stored.content.body, undefined, "stored event carries a plaintext body");
  assert.ok(!JSON.stringify(json).includes(text), "the plaintext appears in the server's /messages answer");
  for (const e of json.chunk) {
    assert.notEqual(e.type, "m.room.message", `the server holds a plaintext m.room.message (${e.event_id})`);
  }
});

test("an encrypted attachment round-trips through the media repository", { timeout: TEST_TIMEOUT_MS }, async () => {
  const { alice, bob, roomId, bobSession } = ctx;
  const plaintext = crypto.getRandomValues(new Uint8Array(48 * 1024 + 7));
  const { ciphertext, file } = await encryptAttachment(plaintext);

  const upload = await step("uploadContent to /_matrix/media/v3/upload", () =>
    alice.uploadContent(ciphertext, { type: "application/octet-stream", includeFilename: false }),
  );
  const mxc = upload.content_uri;
  assert.match(mxc ?? "", /^mxc:\/\/[^/]+\/[^/]+$/, `upload returned ${JSON.stringify(upload)}`);

  const { event_id: eventId } = await step("Alice's encrypted m.file sendMessage", () =>
    alice.sendMessage(roomId, {
      msgtype: "m.file",
      body: "secret.bin",
      filename: "secret.bin",
      info: { mimetype: "application/octet-stream", size: plaintext.length },
      file: { ...file, url: mxc },
    }),
  );

  const event = await waitForDecrypted(bob, "Bob", roomId, eventId);
  assert.equal(event.getWireType(), "m.room.encrypted");
  const content = event.getContent();
  assert.equal(content.msgtype, "m.file");
  assert.ok(content.file?.url, `the decrypted event has no file object: ${JSON.stringify(content)}`);
  assert.equal(content.url, undefined, "an encrypted attachment must not have a plaintext url");

  const [, serverName, mediaId] = content.file.url.match(/^mxc:\/\/([^/]+)\/(.+)$/);
  const response = await fetch(
    `${BASE}/_matrix/client/v1/media/download/${encodeURIComponent(serverName)}/${encodeURIComponent(mediaId)}`,
    { headers: { Authorization: `Bearer ${bobSession.access_token}` } },
  );
  const downloaded = new Uint8Array(await response.arrayBuffer());
  assert.equal(
    response.status,
    200,
    `authenticated download failed: HTTP ${response.status} ${Buffer.from(downloaded).toString().slice(0, 300)}`,
  );
  assert.equal(downloaded.length, ciphertext.length, "the download's length differs from the upload's");
  assert.ok(Buffer.from(downloaded).equals(Buffer.from(ciphertext)), "the server returned different bytes than were uploaded");

  const decrypted = await decryptAttachment(downloaded, content.file);
  assert.ok(Buffer.from(decrypted).equals(Buffer.from(plaintext)), "decrypted attachment differs from the original");

  // The unauthenticated download endpoint must not serve it without a token.
  const anonymous = await fetch(
    `${BASE}/_matrix/client/v1/media/download/${encodeURIComponent(serverName)}/${encodeURIComponent(mediaId)}`,
  );
  await anonymous.arrayBuffer();
  assert.equal(anonymous.status, 401, "the authenticated media endpoint served a request without a token");
});
