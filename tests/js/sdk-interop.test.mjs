// Interop test between our SDK and a real Matrix client: Alice uses
// cloister-cli (the Cloister SDK: vodozemac Olm/Megolm, encrypted store),
// Bob uses matrix-js-sdk with its Rust crypto. They share an encrypted room
// on the homeserver at CLOISTER_URL; text and a file go both ways and are
// decrypted on each side. A key backup made by either is restored by the
// other with the recovery key, and each reads the other's history. Then
// they verify each other by emoji over
// to-device messages, each side asking once: the CLI prints its emoji and
// the test answers its prompt only after comparing them with js-sdk's,
// and both end with the other's identity cross-signing verified.
//
// Run: CLOISTER_URL=http://127.0.0.1:8008 CLOISTER_CLI=target/debug/cloister-cli node --test tests/js/sdk-interop.test.mjs
// (scripts/test-js.sh builds the server and the CLI, starts a server, and does this for you.)
// CLOISTER_JS_VERBOSE=1 keeps the JS SDK's debug/info logging.
// The matrix-js-sdk client and the helpers it uses live in support.mjs.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { webcrypto as crypto } from "node:crypto";
import {
  BASE,
  api,
  bootstrapCrossSigning,
  cryptoApi,
  decryptAttachment,
  encryptAttachment,
  randomSuffix,
  register,
  sharedEncryptedRoom,
  startClient,
  step,
  stopClients,
  waitFor,
  waitForDecrypted,
  waitForSas,
} from "./support.mjs";

const CLI = process.env.CLOISTER_CLI ?? "";
const SETUP_TIMEOUT_MS = 120_000;
const TEST_TIMEOUT_MS = 90_000;
const STEP_TIMEOUT_MS = 45_000;

// ---------------------------------------------------------------------------
// cloister-cli

const ctx = {};

/** Runs cloister-cli as Alice; resolves with stdout, rejects with stderr. */
function cli(args, timeoutMs = STEP_TIMEOUT_MS, storeDir = ctx.storeDir) {
  return new Promise((resolve, reject) => {
    execFile(
      CLI,
      ["--homeserver", BASE, "--store", storeDir, ...args],
      {
        timeout: timeoutMs,
        env: { ...process.env, CLOISTER_STORE_PASSPHRASE: ctx.storePassphrase },
        maxBuffer: 16 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`cloister-cli ${args.join(" ")} failed (${error.code ?? error.signal}): ${stderr.trim()}`));
        } else {
          resolve(stdout);
        }
      },
    );
  });
}

/**
 * Runs an interactive cloister-cli command (verify): its output is read line
 * by line, its prompt answered on its standard input.
 */
function cliInteractive(args) {
  const child = spawn(CLI, ["--homeserver", BASE, "--store", ctx.storeDir, ...args], {
    env: { ...process.env, CLOISTER_STORE_PASSPHRASE: ctx.storePassphrase },
    stdio: ["pipe", "pipe", "pipe"],
  });
  const lines = [];
  let partial = "";
  let stderr = "";
  child.stdout.on("data", (chunk) => {
    partial += chunk;
    let end;
    while ((end = partial.indexOf("\n")) >= 0) {
      lines.push(partial.slice(0, end));
      partial = partial.slice(end + 1);
    }
  });
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
  // The prompt waiting for an answer has no newline yet: shown as `partial`.
  const describe = () => `cloister-cli ${args.join(" ")} printed: ${JSON.stringify([...lines, partial])}; stderr: ${stderr.trim()}`;
  return {
    describe,
    exited,
    /** The rest of the first line starting with `prefix`. */
    line: (prefix) =>
      waitFor(
        () => lines.find((l) => l.startsWith(prefix))?.slice(prefix.length),
        () => `cloister-cli never printed ${JSON.stringify(prefix)}; ${describe()}`,
        STEP_TIMEOUT_MS,
      ),
    answer: (text) => child.stdin.write(`${text}\n`),
    kill: () => child.kill(),
  };
}

/** The same emoji, whatever variation selectors each side adds. */
const plainEmoji = (list) => list.map((e) => e.replace(/\uFE0F/g, ""));

/** `listen ROOM --count N --json`: the decrypted events cloister-cli printed. */
async function cliListen(roomId, count) {
  const out = await cli(["listen", roomId, "--count", String(count), "--timeout", "40", "--json"], 60_000);
  return out
    .split("\n")
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line));
}

// ---------------------------------------------------------------------------
// matrix-js-sdk (Bob)

let bobClient = null;

const waitForBobDecrypted = (eventId) => waitForDecrypted(bobClient, "Bob", ctx.roomId, eventId, STEP_TIMEOUT_MS);

// ---------------------------------------------------------------------------

before(
  async () => {
    assert.ok(BASE, "set CLOISTER_URL to the homeserver's base URL");
    assert.ok(CLI, "set CLOISTER_CLI to the cloister-cli binary (scripts/test-js.sh builds it)");
    const suffix = randomSuffix();
    ctx.storeDir = await mkdtemp(join(tmpdir(), "cloister-cli-interop-"));
    ctx.storePassphrase = `store-${suffix}`;
    const aliceName = `alice-cli-${suffix}`;
    const alicePassword = `alice-password-${suffix}`;
    ctx.alicePassword = alicePassword;
    ctx.alice = await register(aliceName, alicePassword, "sdk-interop");
    ctx.bobPassword = `bob-password-${suffix}`;
    ctx.bobSession = await register(`bob-js-${suffix}`, ctx.bobPassword, "sdk-interop");

    const login = await cli(["login", aliceName, "--password", alicePassword, "--device-name", "cloister-cli interop"]);
    assert.match(login, /logged in as @alice-cli-/);
    // Bob can scan codes too, as Element on a phone says it can.
    const bob = await startClient("bob", ctx.bobSession, {}, {
      verificationMethods: ["m.sas.v1", "m.qr_code.show.v1", "m.qr_code.scan.v1", "m.reciprocate.v1"],
    });
    bobClient = bob;

    ctx.roomId = (await cli(["create-room", "--name", "sdk interop", "--invite", ctx.bobSession.user_id])).trim();
    assert.match(ctx.roomId, /^!/);
    await waitFor(
      () => bob.getRoom(ctx.roomId)?.getMyMembership() === "invite",
      "Bob never saw the CLI's invite",
      STEP_TIMEOUT_MS,
    );
    await step("Bob's joinRoom", () => bob.joinRoom(ctx.roomId));
    await waitFor(
      () => bob.getCrypto().isEncryptionEnabledInRoom(ctx.roomId),
      "Bob does not see the room as encrypted",
      STEP_TIMEOUT_MS,
    );
    // Bob's client must know the CLI device's keys before it can share a room key with it.
    await waitFor(async () => {
      const devices = await bob.getCrypto().getUserDeviceInfo([ctx.alice.user_id], true);
      return devices.get(ctx.alice.user_id)?.size > 0;
    }, "Bob's client never learned Alice's (cloister-cli's) device keys", STEP_TIMEOUT_MS);
  },
  { timeout: SETUP_TIMEOUT_MS },
);

after(async () => {
  stopClients();
  if (ctx.storeDir) await rm(ctx.storeDir, { recursive: true, force: true });
});

test("a message from cloister-cli decrypts in matrix-js-sdk", { timeout: TEST_TIMEOUT_MS }, async () => {
  const text = `hello from the Cloister SDK ${randomSuffix()}`;
  const eventId = (await cli(["send", ctx.roomId, text])).trim();
  assert.match(eventId, /^\$/);
  ctx.cliMessage = { eventId, text };
  const event = await waitForBobDecrypted(eventId);
  assert.equal(event.getWireType(), "m.room.encrypted");
  assert.equal(event.getType(), "m.room.message");
  assert.equal(event.getContent().body, text);
  assert.equal(event.getSender(), ctx.alice.user_id);
});

test("a message from matrix-js-sdk decrypts in cloister-cli", { timeout: TEST_TIMEOUT_MS }, async () => {
  const text = `hello from matrix-js-sdk ${randomSuffix()}`;
  const { event_id: eventId } = await bobClient.sendMessage(ctx.roomId, { msgtype: "m.text", body: text });
  const events = await cliListen(ctx.roomId, 1);
  assert.equal(events.length, 1, JSON.stringify(events));
  const [event] = events;
  assert.equal(event.event_id, eventId);
  assert.equal(event.type, "m.room.message");
  assert.equal(event.content.body, text);
  assert.equal(event.sender, ctx.bobSession.user_id);
  assert.equal(event.encryption.state, "decrypted", JSON.stringify(event.encryption));
  assert.equal(event.encryption.sender_device, ctx.bobSession.device_id);
});

test("a file from cloister-cli decrypts in matrix-js-sdk", { timeout: TEST_TIMEOUT_MS }, async () => {
  const plaintext = crypto.getRandomValues(new Uint8Array(40 * 1024 + 3));
  const path = join(ctx.storeDir, "from-cli.bin");
  await writeFile(path, plaintext);
  const eventId = (await cli(["send-file", ctx.roomId, path])).trim();
  const event = await waitForBobDecrypted(eventId);
  const content = event.getContent();
  assert.equal(content.msgtype, "m.file");
  assert.equal(content.body, "from-cli.bin");
  assert.equal(content.url, undefined, "no plaintext url");
  const [, serverName, mediaId] = content.file.url.match(/^mxc:\/\/([^/]+)\/(.+)$/);
  const response = await fetch(
    `${BASE}/_matrix/client/v1/media/download/${encodeURIComponent(serverName)}/${encodeURIComponent(mediaId)}`,
    { headers: { Authorization: `Bearer ${ctx.bobSession.access_token}` } },
  );
  assert.equal(response.status, 200);
  const ciphertext = new Uint8Array(await response.arrayBuffer());
  assert.ok(!Buffer.from(ciphertext).equals(Buffer.from(plaintext)), "the server holds the plaintext");
  const decrypted = await decryptAttachment(ciphertext, content.file);
  assert.ok(Buffer.from(decrypted).equals(Buffer.from(plaintext)), "the file decrypted to different bytes");
});

test("a file from matrix-js-sdk decrypts in cloister-cli", { timeout: TEST_TIMEOUT_MS }, async () => {
  const plaintext = crypto.getRandomValues(new Uint8Array(33 * 1024 + 11));
  const { ciphertext, file } = await encryptAttachment(plaintext);
  const upload = await bobClient.uploadContent(ciphertext, { type: "application/octet-stream", includeFilename: false });
  const { event_id: eventId } = await bobClient.sendMessage(ctx.roomId, {
    msgtype: "m.file",
    body: "from-js.bin",
    info: { mimetype: "application/octet-stream", size: plaintext.length },
    file: { ...file, url: upload.content_uri },
  });
  const [event] = await cliListen(ctx.roomId, 1);
  assert.equal(event.event_id, eventId);
  assert.equal(event.content.body, "from-js.bin");
  assert.equal(event.encryption.state, "decrypted");
  const out = join(ctx.storeDir, "from-js.bin");
  const saved = await cli(["download", eventId, out]);
  assert.match(saved, /^saved \d+ bytes/);
  const downloaded = await readFile(out);
  assert.ok(downloaded.equals(Buffer.from(plaintext)), "cloister-cli decrypted the file to different bytes");
});

// ---------------------------------------------------------------------------
// Emoji verification between the Cloister SDK and matrix-js-sdk (to-device)

const { CryptoEvent, VerificationPhase } = cryptoApi;
const VERIFICATION_TIMEOUT_MS = 150_000;

/** Bob's SAS on `request` once it started: emoji compared with the CLI's, then confirmed on both. */
async function compareAndConfirm(request, verifying) {
  const verifier = request.verifier;
  const verified = verifier.verify();
  const sas = await waitForSas(verifier, "Bob");
  const cliEmoji = (await verifying.line("emoji: ")).split(" ");
  assert.deepEqual(
    plainEmoji(cliEmoji),
    plainEmoji(sas.sas.emoji.map(([emoji]) => emoji)),
    "cloister-cli and matrix-js-sdk show different emoji",
  );
  const numbers = (await verifying.line("numbers: ")).split(" ").map(Number);
  assert.deepEqual(numbers, sas.sas.decimal, "different numbers");
  verifying.answer("y");
  await sas.confirm();
  await step("Bob's verifier.verify()", () => verified);
  const code = await verifying.exited;
  assert.equal(code, 0, `cloister-cli verify failed: ${verifying.describe()}`);
  assert.match(await verifying.line("verified "), /^@/);
}

test("cloister-cli and matrix-js-sdk verify each other by emoji, each asking once", { timeout: VERIFICATION_TIMEOUT_MS }, async () => {
  const aliceId = ctx.alice.user_id;
  const bobId = ctx.bobSession.user_id;
  const aliceDevice = (await cli(["whoami"])).match(/^device:\s+(\S+)/m)[1];
  assert.match(await cli(["cross-signing", "setup"]), /this device is trusted/);
  await bootstrapCrossSigning(bobClient, ctx.bobSession, ctx.bobPassword, "Bob");
  await waitFor(
    () => bobClient.getCrypto().userHasCrossSigningKeys(aliceId, true),
    "Bob's client never learned the CLI user's cross-signing keys",
  );
  const bobVerifies = async () => (await bobClient.getCrypto().getUserVerificationStatus(aliceId)).isCrossSigningVerified();
  assert.equal(await bobVerifies(), false);
  const aliceVerifies = async () => /identity verified/.test(await cli(["cross-signing", "status", bobId]));
  assert.equal(await aliceVerifies(), false);

  // 1. matrix-js-sdk asks; the CLI answers.
  const answering = cliInteractive(["verify", "--incoming", "--timeout", "90"]);
  try {
    const request = await step("Bob's requestDeviceVerification", () =>
      bobClient.getCrypto().requestDeviceVerification(aliceId, aliceDevice),
    );
    await waitFor(
      () => request.phase === VerificationPhase.Ready,
      () => `the CLI never answered m.key.verification.ready (phase ${request.phase}); ${answering.describe()}`,
    );
    assert.ok(request.otherPartySupportsMethod("m.sas.v1"));
    await step("Bob's startVerification(m.sas.v1)", () => request.startVerification("m.sas.v1"));
    await compareAndConfirm(request, answering);
  } finally {
    answering.kill();
  }
  // Each signed the other's master key with its user-signing key.
  await waitFor(bobVerifies, "Bob does not see the CLI user as cross-signing verified");
  await waitFor(aliceVerifies, "the CLI does not see Bob's identity as verified");

  // 2. The CLI asks; matrix-js-sdk accepts and the CLI starts SAS.
  const incoming = new Promise((resolve) => bobClient.once(CryptoEvent.VerificationRequestReceived, resolve));
  const asking = cliInteractive(["verify", bobId, bobClient.getDeviceId(), "--timeout", "90"]);
  try {
    const request = await step("Bob's VerificationRequestReceived", () => incoming);
    assert.equal(request.otherUserId, aliceId);
    await step("Bob's VerificationRequest.accept", () => request.accept());
    await waitFor(
      () => (request.phase === VerificationPhase.Started ? request.verifier : null),
      () => `the CLI never sent m.key.verification.start (phase ${request.phase}); ${asking.describe()}`,
    );
    await compareAndConfirm(request, asking);
    await waitFor(
      () => request.phase === VerificationPhase.Done,
      `Bob's request never reached Done (phase ${request.phase})`,
    );
  } finally {
    asking.kill();
  }
  const trust = await bobClient.getCrypto().getDeviceVerificationStatus(aliceId, aliceDevice);
  assert.ok(trust?.isVerified(), `Bob's view of the CLI device: ${JSON.stringify(trust)}`);
});

test("cloister-cli and matrix-js-sdk verify each other by emoji in their room, as Element verifies people", { timeout: VERIFICATION_TIMEOUT_MS }, async () => {
  const aliceId = ctx.alice.user_id;
  const bobId = ctx.bobSession.user_id;

  // 1. matrix-js-sdk asks in the room (requestVerificationDM); the CLI answers.
  const answering = cliInteractive(["verify", "--incoming", "--timeout", "90"]);
  try {
    const request = await step("Bob's requestVerificationDM", () =>
      bobClient.getCrypto().requestVerificationDM(aliceId, ctx.roomId),
    );
    await waitFor(
      () => request.phase === VerificationPhase.Ready,
      () => `the CLI never answered the in-room request (phase ${request.phase}); ${answering.describe()}`,
    );
    const from = await answering.line("verification request from ");
    assert.ok(from.startsWith(bobId), from);
    await step("Bob's startVerification(m.sas.v1)", () => request.startVerification("m.sas.v1"));
    await compareAndConfirm(request, answering);
  } finally {
    answering.kill();
  }

  // 2. The CLI asks in the room; matrix-js-sdk accepts and the CLI starts SAS.
  const incoming = new Promise((resolve) => bobClient.once(CryptoEvent.VerificationRequestReceived, resolve));
  const asking = cliInteractive(["verify", bobId, "--room", ctx.roomId, "--timeout", "90"]);
  try {
    const request = await step("Bob's VerificationRequestReceived (in the room)", () => incoming);
    assert.equal(request.roomId, ctx.roomId, "js-sdk did not see an in-room request");
    await step("Bob's VerificationRequest.accept", () => request.accept());
    await waitFor(
      () => (request.phase === VerificationPhase.Started ? request.verifier : null),
      () => `the CLI never sent m.key.verification.start in the room (phase ${request.phase}); ${asking.describe()}`,
    );
    await compareAndConfirm(request, asking);
    await waitFor(() => request.phase === VerificationPhase.Done, `Bob's request never reached Done (phase ${request.phase})`);
  } finally {
    asking.kill();
  }
});

test("cloister-cli and matrix-js-sdk verify each other by QR code, each showing it once", { timeout: VERIFICATION_TIMEOUT_MS }, async () => {
  const aliceId = ctx.alice.user_id;
  const aliceDevice = (await cli(["whoami"])).match(/^device:\s+(\S+)/m)[1];
  const ready = async (answering) => {
    const request = await step("Bob's requestDeviceVerification", () =>
      bobClient.getCrypto().requestDeviceVerification(aliceId, aliceDevice),
    );
    await waitFor(
      () => request.phase === VerificationPhase.Ready,
      () => `the CLI never answered (phase ${request.phase}, cancelled with ${request.cancellationCode} by ${request.cancellingUserId}); ${answering.describe()}`,
      STEP_TIMEOUT_MS,
    );
    return request;
  };

  // 1. The CLI shows its code; matrix-js-sdk scans it; the CLI's user confirms.
  const showing = cliInteractive(["verify", "--incoming", "--method", "show", "--timeout", "90"]);
  try {
    const request = await ready(showing);
    const code = Buffer.from(await showing.line("qr: "), "base64");
    assert.ok(code.subarray(0, 6).equals(Buffer.from("MATRIX")), "not a Matrix QR code");
    const verifier = await step("Bob's scanQRCode", () => request.scanQRCode(new Uint8ClampedArray(code)));
    const verified = verifier.verify();
    await waitFor(
      () => showing.describe().includes("did it say so?"),
      () => `the CLI never saw the scan; ${showing.describe()}`,
    );
    showing.answer("y");
    await step("Bob's verifier.verify() (QR scanned)", () => verified);
    await waitFor(
      () => request.phase === VerificationPhase.Done,
      () => `Bob's request never reached Done (phase ${request.phase}); ${showing.describe()}`,
    );
    assert.equal(await showing.exited, 0, `cloister-cli verify --method show failed: ${showing.describe()}`);
  } finally {
    showing.kill();
  }

  // 2. matrix-js-sdk shows its code; the CLI scans it (the test pastes it).
  const scanning = cliInteractive(["verify", "--incoming", "--method", "scan", "--timeout", "90"]);
  try {
    const request = await ready(scanning);
    const code = await step("Bob's generateQRCode", () => request.generateQRCode());
    assert.ok(code, "js-sdk offers no QR code: the CLI's ready must list m.qr_code.scan.v1");
    scanning.answer(Buffer.from(code).toString("base64"));
    const verifier = await waitFor(
      () => (request.phase === VerificationPhase.Started ? request.verifier : null),
      () => `the CLI never answered the scan with m.reciprocate.v1 (phase ${request.phase}); ${scanning.describe()}`,
    );
    const verified = verifier.verify();
    const callbacks = await waitFor(
      () => verifier.getReciprocateQrCodeCallbacks(),
      "js-sdk never asked to confirm the scan",
    );
    callbacks.confirm();
    await step("Bob's verifier.verify() (QR shown)", () => verified);
    await waitFor(
      () => request.phase === VerificationPhase.Done,
      () => `Bob's request never reached Done after the CLI's done (phase ${request.phase}); ${scanning.describe()}`,
    );
    assert.equal(await scanning.exited, 0, `cloister-cli verify --method scan failed: ${scanning.describe()}`);
  } finally {
    scanning.kill();
  }
});

// ---------------------------------------------------------------------------
// Key backup and secret storage between the Cloister SDK and matrix-js-sdk

const { decodeRecoveryKey } = cryptoApi;

/** Secret storage callbacks that answer with one known key, as Element's after the user typed it. */
function secretStorageCallbacks(getKey) {
  return {
    getSecretStorageKey: async ({ keys }) => {
      const key = getKey();
      const keyId = Object.keys(keys).find((id) => id === key?.keyId) ?? Object.keys(keys)[0];
      return key ? [keyId, key.privateKey] : null;
    },
  };
}

test("a backup made by matrix-js-sdk is restored by cloister-cli with its recovery key", { timeout: VERIFICATION_TIMEOUT_MS }, async () => {
  const suffix = randomSuffix();
  const password = `dora-password-${suffix}`;
  const name = `dora-js-${suffix}`;
  const session = await register(name, password, "sdk-interop");
  let generated = null;
  const dora = await startClient("dora", session, {}, {
    cryptoCallbacks: secretStorageCallbacks(() => generated && { keyId: null, privateKey: generated.privateKey }),
  });
  await bootstrapCrossSigning(dora, session, password, "Dora");
  const crypto = dora.getCrypto();
  await step("Dora's bootstrapSecretStorage with a new key backup", () =>
    crypto.bootstrapSecretStorage({
      createSecretStorageKey: async () => (generated = await crypto.createRecoveryKeyFromPassphrase()),
      setupNewKeyBackup: true,
    }),
  );
  const version = await crypto.getActiveSessionBackupVersion();
  assert.ok(version, "js-sdk has no active backup after bootstrapSecretStorage");

  // History Dora can read: a message from Bob in a room they share.
  const roomId = await sharedEncryptedRoom({
    inviter: bobClient,
    inviterLabel: "Bob",
    invitee: dora,
    inviteeLabel: "Dora",
    inviteeUserId: session.user_id,
    createOptions: { name: "Dora's history" },
  });
  const text = `for Dora's backup ${randomSuffix()}`;
  const { event_id: eventId } = await bobClient.sendMessage(roomId, { msgtype: "m.text", body: text });
  await waitForDecrypted(dora, "Dora", roomId, eventId);
  await waitFor(async () => {
    const { status, json } = await api("GET", `/_matrix/client/v3/room_keys/keys?version=${version}`, {
      token: session.access_token,
    });
    return status === 200 && json.rooms?.[roomId];
  }, "js-sdk never uploaded the room key to its backup");

  // Dora on a new device with cloister-cli and only the recovery key.
  const store = await mkdtemp(join(tmpdir(), "cloister-cli-dora-"));
  try {
    await cli(["login", name, "--password", password], STEP_TIMEOUT_MS, store);
    const restored = await cli(["recovery", "restore", "--key", generated.encodedPrivateKey], 60_000, store);
    assert.match(restored, /restored [1-9]\d* room keys/, restored);
    assert.match(restored, /this device is trusted/, restored);
    const history = (await cli(["history", roomId, "--json"], STEP_TIMEOUT_MS, store))
      .split("\n")
      .filter((line) => line.trim())
      .map((line) => JSON.parse(line));
    const found = history.find((e) => e.event_id === eventId);
    assert.ok(found, `cloister-cli's history lacks ${eventId}`);
    assert.equal(found.content.body, text);
    assert.equal(found.encryption.state, "decrypted");
  } finally {
    await rm(store, { recursive: true, force: true });
  }
});

test("a backup made by cloister-cli is restored by matrix-js-sdk with its recovery key", { timeout: VERIFICATION_TIMEOUT_MS }, async () => {
  assert.ok(ctx.cliMessage, "needs the message the CLI sent in an earlier test");
  const status = await cli(["cross-signing", "status"]);
  if (!/holds the private/.test(status)) await cli(["cross-signing", "setup"]);
  const out = await cli(["recovery", "setup"], 60_000);
  const recoveryKey = out.match(/^recovery key: (.+)$/m)?.[1];
  assert.ok(recoveryKey, out);

  // Alice signs in with matrix-js-sdk on a new device, with the recovery key.
  const { status: loginStatus, json: login } = await api("POST", "/_matrix/client/v3/login", {
    body: {
      type: "m.login.password",
      identifier: { type: "m.id.user", user: ctx.alice.user_id },
      password: ctx.alicePassword,
    },
  });
  assert.equal(loginStatus, 200, JSON.stringify(login));
  // The CLI's message is old by now: a long enough first sync brings it.
  const aliceJs = await startClient("alice-js", login, { initialSyncLimit: 200 }, {
    cryptoCallbacks: secretStorageCallbacks(() => ({ keyId: null, privateKey: decodeRecoveryKey(recoveryKey) })),
  });
  const crypto = aliceJs.getCrypto();
  await step("js-sdk's loadSessionBackupPrivateKeyFromSecretStorage", () =>
    crypto.loadSessionBackupPrivateKeyFromSecretStorage(),
  );
  const check = await step("js-sdk's checkKeyBackupAndEnable", () => crypto.checkKeyBackupAndEnable());
  assert.ok(check?.backupInfo, "js-sdk found no backup");
  const result = await step("js-sdk's restoreKeyBackup", () => crypto.restoreKeyBackup());
  assert.ok(result.imported >= 1, `js-sdk restored ${JSON.stringify(result)}`);
  const event = await waitForDecrypted(aliceJs, "Alice (js)", ctx.roomId, ctx.cliMessage.eventId);
  assert.equal(event.getContent().body, ctx.cliMessage.text);
});
