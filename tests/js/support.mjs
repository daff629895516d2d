// Helpers shared by the interop tests: raw client-server API calls and
// registration against CLOISTER_URL, unpadded base64, Matrix v2 attachment
// encryption (AES-CTR-256 + SHA-256) with WebCrypto, and matrix-js-sdk
// clients (Rust crypto) whose failed requests and SDK warnings end up in
// the failure messages.
//
// Importing this module silences the SDK's logging and unrefs long timers
// before it loads matrix-js-sdk; the tests take the SDK from here (`sdk`).
// CLOISTER_JS_VERBOSE=1 keeps the SDK's debug/info logging.

import assert from "node:assert/strict";
import { jsonOf } from "./http.mjs";
import { webcrypto as crypto } from "node:crypto";

export const BASE = (process.env.CLOISTER_URL ?? "").replace(/\/+$/, "");

/** Default time one step (a sync, a decryption, a verification phase) may take. */
export const STEP_TIMEOUT_MS = 30_000;

// ---------------------------------------------------------------------------
// Before matrix-js-sdk is loaded

// The wasm crypto and the SDK log heavily; silence that before the SDK is
// loaded (it looks console methods up at call time). The SDK's warnings and
// errors are kept (first line each) and shown with a failure instead.
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
// it, which would keep the process alive long after the tests end. Long
// timers are unref'd: they still fire while the test runs, but no longer
// hold the process open once the clients are stopped.
const realSetTimeout = globalThis.setTimeout;
globalThis.setTimeout = function setTimeoutUnrefLong(callback, ms, ...args) {
  const timer = realSetTimeout(callback, ms, ...args);
  if (ms >= 10_000) timer?.unref?.();
  return timer;
};

export const sdk = await import("matrix-js-sdk");
/** The crypto API's enums (CryptoEvent, VerificationPhase, VerifierEvent), which Element imports from crypto-api. */
export const cryptoApi = await import("matrix-js-sdk/lib/crypto-api/index.js");

export function randomSuffix() {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(6))).toString("hex");
}

/** Matrix "unpadded base64" (standard alphabet). */
export function b64(bytes) {
  return Buffer.from(bytes).toString("base64").replace(/=+$/, "");
}

export function fromB64(text) {
  return new Uint8Array(Buffer.from(text, "base64"));
}

/** A path template with every interpolated value URL-encoded:
 * path`/rooms/${roomId}/event/${eventId}`. */
export const path = (strings, ...values) =>
  strings.reduce((out, s, i) => out + encodeURIComponent(values[i - 1]) + s);

export async function api(method, path, { token, body } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(`${BASE}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new Error(`${method} ${path}: cannot reach ${BASE}: ${e.cause ?? e}`);
  }
  return { status: response.status, json: await jsonOf(response) };
}


/** Registers through user-interactive auth with m.login.dummy. */
export async function register(localpart, password, label = "interop") {
  const request = { username: localpart, password, initial_device_display_name: `${label} ${localpart}` };
  let { status, json } = await api("POST", "/_matrix/client/v3/register", { body: request });
  if (status === 401 && json.session) {
    ({ status, json } = await api("POST", "/_matrix/client/v3/register", {
      body: { ...request, auth: { type: "m.login.dummy", session: json.session } },
    }));
  }
  assert.equal(status, 200, `registering ${localpart} failed: HTTP ${status} ${JSON.stringify(json)}`);
  assert.ok(json.access_token && json.device_id, `register answer lacks a token or device: ${JSON.stringify(json)}`);
  return json;
}

export async function encryptAttachment(plaintext) {
  const key = await crypto.subtle.generateKey({ name: "AES-CTR", length: 256 }, true, ["encrypt", "decrypt"]);
  const jwk = await crypto.subtle.exportKey("jwk", key);
  const iv = new Uint8Array(16);
  crypto.getRandomValues(iv.subarray(0, 8)); // low 8 bytes (the counter) stay zero
  const ciphertext = new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-CTR", counter: iv, length: 64 }, key, plaintext),
  );
  const sha256 = new Uint8Array(await crypto.subtle.digest("SHA-256", ciphertext));
  return {
    ciphertext,
    file: {
      v: "v2",
      key: { kty: "oct", key_ops: ["encrypt", "decrypt"], alg: "A256CTR", k: jwk.k, ext: true },
      iv: b64(iv),
      hashes: { sha256: b64(sha256) },
    },
  };
}

export async function decryptAttachment(ciphertext, file) {
  assert.equal(file.v, "v2", "attachment format version");
  const digest = b64(new Uint8Array(await crypto.subtle.digest("SHA-256", ciphertext)));
  assert.equal(digest, file.hashes.sha256, "sha256 of the downloaded ciphertext differs from the event's");
  const key = await crypto.subtle.importKey("jwk", file.key, { name: "AES-CTR" }, false, ["decrypt"]);
  return new Uint8Array(
    await crypto.subtle.decrypt({ name: "AES-CTR", counter: fromB64(file.iv), length: 64 }, key, ciphertext),
  );
}

// ---------------------------------------------------------------------------
// Waiting, steps and failure reports

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function report(message) {
  process.stderr.write(`[interop] ${message}\n`);
}

/** Every non-2xx answer any client got, for failure messages. */
const failures = [];

/** The failed requests and the SDK's last warnings, to append to an error message. */
export function failedRequests() {
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

/** Polls `check` until it returns a truthy value; fails with `describe()` after `timeoutMs`. */
export async function waitFor(check, describe, timeoutMs = STEP_TIMEOUT_MS) {
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

/** Runs one step; a failure names the step and lists the failed requests. */
export async function step(what, fn) {
  try {
    return await fn();
  } catch (e) {
    const detail = e?.httpStatus ? ` (HTTP ${e.httpStatus} ${JSON.stringify(e.data ?? {}).slice(0, 300)})` : "";
    throw new Error(`${what} failed: ${e?.message ?? e}${detail}${failedRequests()}`, { cause: e });
  }
}

/** A request body for a failure message, with passwords blanked out. */
function describeBody(body) {
  if (typeof body !== "string" || body.length === 0) return "";
  const text = body.replace(/("password"\s*:\s*)"(?:[^"\\]|\\.)*"/g, '$1"…"');
  return ` request body ${text.slice(0, 600)}${text.length > 600 ? "…" : ""}`;
}

/** A `fetch` for the SDK that records every failed request (and what was sent) in `failures`. */
export function recordingFetch(label) {
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
      failures.push(`${label}: ${method} ${url.pathname} → ${response.status} ${body}${describeBody(init.body)}`);
    }
    return response;
  };
}

// ---------------------------------------------------------------------------
// matrix-js-sdk clients

/** Every client created, so that `stopClients` stops them even when setup failed. */
const clients = [];

/**
 * Creates a matrix-js-sdk client with Rust crypto (in memory) for a session
 * from `register`, starts it and waits for its first /sync.
 * `startOptions` go to `startClient` (e.g. `{ threadSupport: true }`),
 * `clientOptions` to `createClient` (e.g. `{ cryptoCallbacks }`).
 */
export async function startClient(label, session, startOptions = {}, clientOptions = {}) {
  const client = sdk.createClient({
    baseUrl: BASE,
    userId: session.user_id,
    accessToken: session.access_token,
    deviceId: session.device_id,
    fetchFn: recordingFetch(label),
    ...clientOptions,
  });
  clients.push(client);
  await step(`${label}'s initRustCrypto`, () => client.initRustCrypto({ useIndexedDB: false }));
  let lastSyncError = null;
  let state = null;
  client.on(sdk.ClientEvent.Sync, (newState, _prev, data) => {
    state = newState;
    if (newState === "ERROR") lastSyncError = data?.error;
  });
  await client.startClient({ initialSyncLimit: 20, ...startOptions });
  await waitFor(
    () => state === "PREPARED" || state === "SYNCING",
    () =>
      `${label}'s client never completed its first /sync (sync state ${state}` +
      `${lastSyncError ? `, last error ${lastSyncError}` : ""}). ` +
      "matrix-js-sdk needs /versions, /pushrules/, /user/{id}/filter, /capabilities, " +
      "/room_keys/version (404 M_NOT_FOUND when there is no backup), /keys/upload and /sync",
    45_000,
  );
  return client;
}

/** Stops every client `startClient` made, so that the process can exit. */
export function stopClients() {
  for (const client of clients.splice(0)) {
    try {
      client.stopClient();
    } catch (e) {
      report(`stopping a client failed: ${e}`);
    }
  }
}

/** Waits until `client` has `eventId` in `roomId` (main timeline or a thread), decrypted, and returns it. */
export async function waitForDecrypted(client, label, roomId, eventId, timeoutMs = STEP_TIMEOUT_MS) {
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
    timeoutMs,
  );
}

/**
 * Sets up `inviter` and `invitee` in a new room the server makes encrypted
 * (checked), with both clients seeing the room as encrypted.
 * `createOptions` go to `createRoom`.
 */
export async function sharedEncryptedRoom({ inviter, inviterLabel, invitee, inviteeLabel, inviteeUserId, createOptions }) {
  const { room_id: roomId } = await step(`${inviterLabel}'s createRoom`, () => inviter.createRoom(createOptions));
  const encryption = await api(
    "GET",
    `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.encryption/`,
    { token: inviter.getAccessToken() },
  );
  assert.equal(
    encryption.status,
    200,
    `a new room must carry m.room.encryption by default: HTTP ${encryption.status} ${JSON.stringify(encryption.json)}`,
  );
  assert.equal(encryption.json.algorithm, "m.megolm.v1.aes-sha2");
  await waitFor(
    () => inviter.getCrypto().isEncryptionEnabledInRoom(roomId),
    `${inviterLabel}'s client never saw the room's m.room.encryption state`,
  );
  if (!createOptions?.invite?.includes(inviteeUserId)) {
    await step(`${inviterLabel}'s invite`, () => inviter.invite(roomId, inviteeUserId));
  }
  await waitFor(
    () => invitee.getRoom(roomId)?.getMyMembership() === "invite",
    `${inviteeLabel}'s client never saw the invite in /sync (rooms.invite)`,
  );
  await step(`${inviteeLabel}'s joinRoom`, () => invitee.joinRoom(roomId));
  await waitFor(
    () => inviter.getRoom(roomId)?.getMember(inviteeUserId)?.membership === "join",
    `${inviterLabel}'s client never saw ${inviteeLabel}'s join in /sync`,
  );
  await waitFor(
    () => invitee.getCrypto().isEncryptionEnabledInRoom(roomId),
    `${inviteeLabel}'s client does not consider the room encrypted`,
  );
  return roomId;
}

/** Waits until `session`'s /keys/query shows `other`'s device (uploaded on startup). */
export async function waitForDeviceKeys(session, other, what) {
  await waitFor(
    async () => {
      const { status, json } = await api("POST", "/_matrix/client/v3/keys/query", {
        token: session.access_token,
        body: { device_keys: { [other.user_id]: [] } },
      });
      return status === 200 && json.device_keys?.[other.user_id]?.[other.device_id];
    },
    `${what}'s device keys never appeared in /keys/query (did /keys/upload succeed?)`,
  );
}

// ---------------------------------------------------------------------------
// Cross-signing and verification, as Element does them

/**
 * The UIA callback of bootstrapCrossSigning, as Element's: first without
 * auth (the server needs none to set up the first keys, MSC3967); when the
 * server answers 401 with UIA flows, again with m.login.password and the
 * account's password. `uia` records what the server asked for.
 */
export function passwordAuth(session, password, label, uia) {
  return async (makeRequest) => {
    try {
      await makeRequest(null);
      uia.required = false;
      return;
    } catch (e) {
      if (e?.httpStatus !== 401 || !e.data?.flows) {
        throw new Error(
          `${label}: POST /keys/device_signing/upload without auth answered neither 200 nor 401 with UIA flows: ` +
            `HTTP ${e?.httpStatus} ${JSON.stringify(e?.data)}`,
          { cause: e },
        );
      }
      uia.required = true;
      uia.challenge = e.data;
    }
    assert.ok(
      uia.challenge.flows.some((flow) => flow.stages?.length === 1 && flow.stages[0] === "m.login.password"),
      `${label}: /keys/device_signing/upload offers no m.login.password flow: ${JSON.stringify(uia.challenge)}`,
    );
    assert.ok(uia.challenge.session, `${label}: the UIA challenge has no session: ${JSON.stringify(uia.challenge)}`);
    await makeRequest({
      type: "m.login.password",
      identifier: { type: "m.id.user", user: session.user_id },
      password,
      session: uia.challenge.session,
    });
  };
}

/** Sets up the user's cross-signing keys; returns what the UIA callback saw. */
export async function bootstrapCrossSigning(client, session, password, label) {
  const crypto = client.getCrypto();
  const uia = { required: null, challenge: null };
  const what = "bootstrapCrossSigning";
  await step(`${label}'s ${what} (POST /keys/device_signing/upload with UIA, /keys/signatures/upload)`, () =>
    crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordAuth(session, password, label, uia) }),
  );
  assert.notEqual(uia.required, null, `${label}'s ${what} never uploaded signing keys`);
  await waitFor(
    () => crypto.isCrossSigningReady(),
    `${label}'s client is not cross-signing ready after its ${what}`,
  );
  const status = await crypto.getCrossSigningStatus();
  const cached = status.privateKeysCachedLocally;
  assert.ok(
    status.publicKeysOnDevice && cached.masterKey && cached.selfSigningKey && cached.userSigningKey,
    `${label}'s cross-signing status: ${JSON.stringify(status)}`,
  );
  return uia;
}

/** Waits for a verifier's emoji (SAS) and returns the callbacks. */
export async function waitForSas(verifier, label) {
  return waitFor(
    () => {
      const sas = verifier.getShowSasCallbacks();
      return sas?.sas?.emoji ? sas : null;
    },
    `${label}'s verifier never showed emoji (m.key.verification.accept/key were not exchanged)`,
  );
}
