// Interop test between our SDK and a real Matrix client: Alice uses
// cloister-cli (the Cloister SDK: vodozemac Olm/Megolm, encrypted store),
// Bob uses matrix-js-sdk with its Rust crypto. They share an encrypted room
// on the homeserver at CLOISTER_URL; text and a file go both ways and are
// decrypted on each side.
//
// Run: CLOISTER_URL=http://127.0.0.1:8008 CLOISTER_CLI=target/debug/cloister-cli node --test tests/js/sdk-interop.test.mjs
// (scripts/test-js.sh builds the server and the CLI, starts a server, and does this for you.)
// CLOISTER_JS_VERBOSE=1 keeps the JS SDK's debug/info logging.
// The matrix-js-sdk client and the helpers it uses live in support.mjs.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { webcrypto as crypto } from "node:crypto";
import {
  BASE,
  decryptAttachment,
  encryptAttachment,
  randomSuffix,
  register,
  startClient,
  step,
  stopClients,
  waitFor,
  waitForDecrypted,
} from "./support.mjs";

const CLI = process.env.CLOISTER_CLI ?? "";
const SETUP_TIMEOUT_MS = 120_000;
const TEST_TIMEOUT_MS = 90_000;
const STEP_TIMEOUT_MS = 45_000;

// ---------------------------------------------------------------------------
// cloister-cli

const ctx = {};

/** Runs cloister-cli as Alice; resolves with stdout, rejects with stderr. */
function cli(args, timeoutMs = STEP_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    execFile(
      CLI,
      ["--homeserver", BASE, "--store", ctx.storeDir, ...args],
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
    ctx.alice = await register(aliceName, alicePassword, "sdk-interop");
    ctx.bobSession = await register(`bob-js-${suffix}`, `bob-password-${suffix}`, "sdk-interop");

    const login = await cli(["login", aliceName, "--password", alicePassword, "--device-name", "cloister-cli interop"]);
    assert.match(login, /logged in as @alice-cli-/);
    const bob = await startClient("bob", ctx.bobSession);
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
