// Interop test: two real matrix-js-sdk clients (Rust crypto) exchange an
// end-to-end-encrypted message and an encrypted attachment through the
// homeserver at CLOISTER_URL, and the server is checked to hold only
// ciphertext.
//
// Run: CLOISTER_URL=http://127.0.0.1:8008 node --test tests/js/*.test.mjs
// (scripts/test-js.sh builds and starts a server and does this for you.)
// CLOISTER_JS_VERBOSE=1 keeps the SDK's debug/info logging.
// The clients and the helpers they use live in support.mjs.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { webcrypto as crypto } from "node:crypto";
import {
  BASE,
  api,
  decryptAttachment,
  encryptAttachment,
  randomSuffix,
  register,
  sdk,
  sharedEncryptedRoom,
  startClient,
  step,
  stopClients,
  waitForDecrypted,
  waitForDeviceKeys,
} from "./support.mjs";

const SETUP_TIMEOUT_MS = 90_000;
const TEST_TIMEOUT_MS = 60_000;

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

    // Both devices publish their keys on startup; Alice must be able to see Bob's.
    await waitForDeviceKeys(ctx.aliceSession, ctx.bobSession, "Bob");

    // A room with no explicit encryption: the server makes it encrypted.
    ctx.roomId = await sharedEncryptedRoom({
      inviter: ctx.alice,
      inviterLabel: "Alice",
      invitee: ctx.bob,
      inviteeLabel: "Bob",
      inviteeUserId: ctx.bobSession.user_id,
      createOptions: { name: "interop", preset: sdk.Preset.PrivateChat },
    });
  },
  { timeout: SETUP_TIMEOUT_MS },
);

after(stopClients);

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
