// Element's everyday flows through matrix-js-sdk (Rust crypto), the library
// Element Web is built on, against the homeserver at CLOISTER_URL:
//   - a 👍 reaction to an encrypted message (m.reaction, sent unencrypted
//     as the SDK does), seen by the other client and by /relations;
//   - an encrypted reply in a thread, decrypted by the other client, with
//     the server's thread summary (bundled m.thread relation, /threads) and
//     the SDK's own thread model;
//   - verifying another user in a DM by emoji (SAS) after both bootstrap
//     cross-signing with user-interactive auth, until each side sees the
//     other as cross-signing verified.
//
// Run: CLOISTER_URL=http://127.0.0.1:8008 node --test tests/js/element-flows.test.mjs
// (scripts/test-js.sh builds and starts a server and does this for you.)
// CLOISTER_JS_VERBOSE=1 keeps the SDK's debug/info logging. The clients and
// the helpers they use live in support.mjs.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import {
  BASE,
  api,
  bootstrapCrossSigning,
  path,
  cryptoApi,
  failedRequests,
  randomSuffix,
  register,
  report,
  sdk,
  sharedEncryptedRoom,
  startClient,
  step,
  stopClients,
  waitFor,
  waitForDecrypted,
  waitForDeviceKeys,
  waitForSas,
} from "./support.mjs";

const SETUP_TIMEOUT_MS = 90_000;
const TEST_TIMEOUT_MS = 60_000;
const VERIFICATION_TIMEOUT_MS = 150_000;

const { CryptoEvent, VerificationPhase, VerifierEvent } = cryptoApi;
const phaseName = (phase) => VerificationPhase[phase] ?? String(phase);

const ctx = {};

before(
  async () => {
    assert.ok(BASE, "set CLOISTER_URL to the homeserver's base URL, e.g. http://127.0.0.1:8008");
    const suffix = randomSuffix();
    ctx.alicePassword = `alice-password-${suffix}`;
    ctx.bobPassword = `bob-password-${suffix}`;
    ctx.aliceSession = await register(`alice-el-${suffix}`, ctx.alicePassword, "element-flows");
    ctx.bobSession = await register(`bob-el-${suffix}`, ctx.bobPassword, "element-flows");
    // Element turns threads on; the SDK then asks /versions (v1.4+) whether
    // the server supports them.
    ctx.alice = await startClient("alice", ctx.aliceSession, { threadSupport: true });
    ctx.bob = await startClient("bob", ctx.bobSession, { threadSupport: true });
    await waitForDeviceKeys(ctx.aliceSession, ctx.bobSession, "Bob");

    ctx.roomId = await sharedEncryptedRoom({
      inviter: ctx.alice,
      inviterLabel: "Alice",
      invitee: ctx.bob,
      inviteeLabel: "Bob",
      inviteeUserId: ctx.bobSession.user_id,
      createOptions: { name: "element flows", preset: sdk.Preset.PrivateChat },
    });
  },
  { timeout: SETUP_TIMEOUT_MS },
);

after(stopClients);

/** Alice sends an encrypted text message; resolves once Bob has decrypted it. */
async function aliceSays(text) {
  const { alice, bob, roomId } = ctx;
  const { event_id: eventId } = await step("Alice's encrypted sendMessage", () =>
    alice.sendMessage(roomId, { msgtype: "m.text", body: text }),
  );
  const event = await waitForDecrypted(bob, "Bob", roomId, eventId);
  assert.equal(event.getWireType(), "m.room.encrypted", "Alice's message must have travelled encrypted");
  assert.equal(event.getContent().body, text);
  return eventId;
}

// ---------------------------------------------------------------------------
// a. Reactions

test("Bob reacts with 👍 to Alice's encrypted message and Alice sees the reaction", { timeout: TEST_TIMEOUT_MS }, async () => {
  const { alice, bob, roomId, aliceSession, bobSession } = ctx;
  const targetId = await aliceSays(`react to this ${randomSuffix()}`);

  // What Element does for a reaction: sendEvent(m.reaction) with an
  // m.annotation relation; the SDK sends reactions unencrypted.
  const reaction = { "m.relates_to": { rel_type: sdk.RelationType.Annotation, event_id: targetId, key: "👍" } };
  const { event_id: reactionId } = await step("Bob's m.reaction sendEvent (PUT /send/m.reaction)", () =>
    bob.sendEvent(roomId, sdk.EventType.Reaction, reaction),
  );
  assert.ok(reactionId, "sending the reaction returned no event id");

  // Alice's client: the reaction arrives through /sync and is aggregated
  // on the target event, as Element shows it under the message.
  const annotations = await waitFor(
    () => {
      const room = alice.getRoom(roomId);
      const relations = room?.relations.getChildEventsForEvent(targetId, sdk.RelationType.Annotation, sdk.EventType.Reaction);
      const byKey = relations?.getSortedAnnotationsByKey();
      return byKey?.length ? byKey : null;
    },
    () => {
      const seen = alice.getRoom(roomId)?.findEventById(reactionId);
      return seen
        ? `Alice's client has the reaction ${reactionId} (type ${seen.getType()}, content ${JSON.stringify(seen.getContent())}) ` +
            `but did not aggregate it onto ${targetId}`
        : `Alice's client never received Bob's reaction ${reactionId} in /sync`;
    },
  );
  assert.equal(annotations.length, 1, `Alice sees reactions under ${annotations.length} keys`);
  const [key, events] = annotations[0];
  assert.equal(key, "👍", "Alice sees a different reaction key");
  const reactions = [...events];
  assert.equal(reactions.length, 1, "Alice sees more than one 👍");
  assert.equal(reactions[0].getId(), reactionId);
  assert.equal(reactions[0].getSender(), bobSession.user_id, "the reaction's sender is not Bob");
  assert.equal(reactions[0].getWireType(), "m.reaction", "the SDK sends reactions unencrypted");

  // The server's relations API, which Element uses to load reactions of
  // older messages.
  const { status, json } = await api(
    "GET",
    path`/_matrix/client/v1/rooms/${roomId}/relations/${targetId}/m.annotation`,
    { token: aliceSession.access_token },
  );
  assert.equal(status, 200, `GET /relations/{eventId}/m.annotation: HTTP ${status} ${JSON.stringify(json)}`);
  assert.ok(Array.isArray(json.chunk), `/relations answer has no chunk: ${JSON.stringify(json)}`);
  const listed = json.chunk.find((e) => e.event_id === reactionId);
  assert.ok(listed, `/relations/{eventId}/m.annotation does not list ${reactionId}: ${JSON.stringify(json)}`);
  assert.equal(listed.type, "m.reaction");
  assert.equal(listed.sender, bobSession.user_id);
  assert.deepEqual(listed.content["m.relates_to"], reaction["m.relates_to"]);
});

// ---------------------------------------------------------------------------
// b. Threads

test("Bob replies in a thread, Alice decrypts it, and the thread summary shows the reply", { timeout: TEST_TIMEOUT_MS }, async () => {
  const { alice, bob, roomId, aliceSession, bobSession } = ctx;
  const rootId = await aliceSays(`start a thread here ${randomSuffix()}`);

  // sendMessage(roomId, threadId, content) adds the m.thread relation
  // (with the reply fallback), as Element's thread composer does.
  const replyText = `a reply in the thread ${randomSuffix()}`;
  const { event_id: replyId } = await step("Bob's encrypted thread reply (sendMessage with a thread id)", () =>
    bob.sendMessage(roomId, rootId, { msgtype: "m.text", body: replyText }),
  );

  const reply = await waitForDecrypted(alice, "Alice", roomId, replyId);
  assert.equal(reply.getWireType(), "m.room.encrypted", "the thread reply must have travelled encrypted");
  assert.equal(reply.getContent().body, replyText, "Alice decrypted a different reply");
  assert.equal(reply.getSender(), bobSession.user_id);
  const relation = reply.getRelation();
  assert.equal(relation?.rel_type, "m.thread", `the reply's relation: ${JSON.stringify(relation)}`);
  assert.equal(relation?.event_id, rootId);
  assert.equal(reply.threadRootId, rootId, "Alice's client does not place the reply in the thread");

  // The thread summary the server bundles with the root (Element's thread
  // list and "n replies" under the message come from it).
  const root = await waitFor(
    async () => {
      const { status, json } = await api("GET", path`/_matrix/client/v3/rooms/${roomId}/event/${rootId}`, {
        token: aliceSession.access_token,
      });
      assert.equal(status, 200, `GET /rooms/{roomId}/event/{rootId}: HTTP ${status} ${JSON.stringify(json)}`);
      return json.unsigned?.["m.relations"]?.["m.thread"] ? json : null;
    },
    `GET /rooms/{roomId}/event/${rootId} never carried unsigned["m.relations"]["m.thread"]`,
    10_000,
  );
  const summary = root.unsigned["m.relations"]["m.thread"];
  assert.equal(summary.count, 1, `thread summary: ${JSON.stringify(summary)}`);
  assert.equal(summary.latest_event?.event_id, replyId, `thread summary's latest_event: ${JSON.stringify(summary)}`);
  assert.equal(summary.latest_event?.type, "m.room.encrypted", "the summary's latest event must be the ciphertext");

  const threads = await api("GET", path`/_matrix/client/v1/rooms/${roomId}/threads`, { token: aliceSession.access_token });
  assert.equal(threads.status, 200, `GET /rooms/{roomId}/threads: HTTP ${threads.status} ${JSON.stringify(threads.json)}`);
  const listed = threads.json.chunk?.find((e) => e.event_id === rootId);
  assert.ok(listed, `/threads does not list the root ${rootId}: ${JSON.stringify(threads.json)}`);
  assert.equal(listed.unsigned?.["m.relations"]?.["m.thread"]?.latest_event?.event_id, replyId, "/threads' summary of the root");

  // The SDK's own thread model (server-side threads, /versions >= v1.4).
  const thread = await waitFor(
    () => {
      const t = alice.getRoom(roomId)?.getThread(rootId);
      return t && t.findEventById(replyId) && t.length >= 1 ? t : null;
    },
    () => {
      const t = alice.getRoom(roomId)?.getThread(rootId);
      return t
        ? `Alice's room.getThread(${rootId}) has ${t.length} replies and events ${JSON.stringify(t.events.map((e) => e.getId()))}, not ${replyId}`
        : `Alice's client has no thread for ${rootId} (threads: ${JSON.stringify(alice.getRoom(roomId)?.getThreads().map((t) => t.id))})`;
    },
  );
  assert.equal(thread.length, 1, "the SDK's thread should have exactly one reply");
  assert.equal(thread.rootEvent?.getId(), rootId);
  assert.equal(thread.replyToEvent?.getId(), replyId, "the SDK's thread's latest reply");
  assert.equal(thread.findEventById(replyId).getContent().body, replyText, "the SDK's thread holds the decrypted reply");
});

// ---------------------------------------------------------------------------
// c. Verifying another user in a DM by emoji

test("Alice verifies Bob in a DM by comparing emoji, and both see each other as verified", { timeout: VERIFICATION_TIMEOUT_MS }, async () => {
  const { alice, bob, aliceSession, bobSession } = ctx;
  const aliceId = aliceSession.user_id;
  const bobId = bobSession.user_id;

  // Fresh accounts: the server may set up the first keys without UIA
  // (MSC3967); the callback then never needs the password.
  const aliceUia = await bootstrapCrossSigning(alice, aliceSession, ctx.alicePassword, "Alice");
  const bobUia = await bootstrapCrossSigning(bob, bobSession, ctx.bobPassword, "Bob");
  report(`first cross-signing upload needed UIA: alice ${aliceUia.required}, bob ${bobUia.required}`);

  // Each must learn the other's new cross-signing identity (device_lists.changed in /sync, then /keys/query).
  await waitFor(
    () => alice.getCrypto().userHasCrossSigningKeys(bobId, true),
    "Alice's client never learned Bob's cross-signing keys (is Bob in device_lists.changed of Alice's /sync, and does /keys/query return master_keys/self_signing_keys?)",
  );
  await waitFor(
    () => bob.getCrypto().userHasCrossSigningKeys(aliceId, true),
    "Bob's client never learned Alice's cross-signing keys",
  );
  for (const [client, other, label] of [[alice, bobId, "Alice"], [bob, aliceId, "Bob"]]) {
    const status = await client.getCrypto().getUserVerificationStatus(other);
    assert.equal(status.isCrossSigningVerified(), false, `${label} must not consider ${other} verified before the SAS`);
  }

  // The DM, as Element's "Start chat" creates it.
  const dmRoomId = await sharedEncryptedRoom({
    inviter: alice,
    inviterLabel: "Alice",
    invitee: bob,
    inviteeLabel: "Bob",
    inviteeUserId: bobId,
    createOptions: { is_direct: true, invite: [bobId], preset: sdk.Preset.TrustedPrivateChat },
  });
  await step("Alice's m.direct account data", () => alice.setAccountData(sdk.EventType.Direct, { [bobId]: [dmRoomId] }));

  let bobRequest = null;
  bob.on(CryptoEvent.VerificationRequestReceived, (request) => {
    if (request.roomId === dmRoomId) bobRequest = request;
  });

  // Alice: "Verify" in Bob's user info → an m.key.verification.request message in the DM.
  const aliceRequest = await step("Alice's requestVerificationDM", () => alice.getCrypto().requestVerificationDM(bobId, dmRoomId));
  const describeRequests = () =>
    `Alice's request is ${phaseName(aliceRequest.phase)}, Bob's is ${bobRequest ? phaseName(bobRequest.phase) : "not received"}`;

  await waitFor(
    () => bobRequest,
    () => `Bob never got CryptoEvent.VerificationRequestReceived for the m.key.verification.request in the DM (${describeRequests()})`,
  );
  assert.equal(bobRequest.otherUserId, aliceId);
  assert.equal(bobRequest.initiatedByMe, false);
  assert.equal(bobRequest.isSelfVerification, false);

  // Bob accepts (m.key.verification.ready); Alice picks emoji (m.key.verification.start, m.sas.v1).
  await step("Bob's VerificationRequest.accept (m.key.verification.ready)", () => bobRequest.accept());
  await waitFor(
    () => aliceRequest.phase === VerificationPhase.Ready && bobRequest.phase === VerificationPhase.Ready,
    () => `the request never became Ready on both sides after Bob's m.key.verification.ready (${describeRequests()})`,
  );
  assert.ok(aliceRequest.otherPartySupportsMethod("m.sas.v1"), "Bob's m.key.verification.ready does not offer m.sas.v1");

  const aliceVerifier = await step("Alice's startVerification(m.sas.v1) (m.key.verification.start)", () =>
    aliceRequest.startVerification("m.sas.v1"),
  );
  const bobVerifier = await waitFor(
    () => (bobRequest.phase === VerificationPhase.Started ? bobRequest.verifier : null),
    () => `Bob never saw Alice's m.key.verification.start (${describeRequests()})`,
  );
  assert.equal(bobRequest.chosenMethod, "m.sas.v1");

  // Both run the SAS: verify() resolves once the MACs are exchanged and confirmed.
  const outcome = { alice: null, bob: null };
  const cancelled = [];
  for (const [verifier, label] of [[aliceVerifier, "alice"], [bobVerifier, "bob"]]) {
    verifier.on(VerifierEvent.Cancel, (e) => cancelled.push(`${label}: ${e?.message ?? e?.getContent?.()?.reason ?? e}`));
    verifier.verify().then(
      () => (outcome[label] = "done"),
      (e) => (outcome[label] = `failed: ${e?.message ?? e}`),
    );
  }
  const aliceSas = await waitForSas(aliceVerifier, "Alice");
  const bobSas = await waitForSas(bobVerifier, "Bob");

  // What the users compare on their screens.
  const aliceEmoji = aliceSas.sas.emoji.map(([emoji, name]) => `${emoji} ${name}`);
  const bobEmoji = bobSas.sas.emoji.map(([emoji, name]) => `${emoji} ${name}`);
  assert.equal(aliceEmoji.length, 7, `Alice's SAS: ${JSON.stringify(aliceEmoji)}`);
  assert.deepEqual(aliceEmoji, bobEmoji, "Alice and Bob see different emoji");

  // Both press "They match" (m.key.verification.mac, then m.key.verification.done).
  await step("Alice's SAS confirm", () => aliceSas.confirm());
  await step("Bob's SAS confirm", () => bobSas.confirm());
  await waitFor(
    () => outcome.alice && outcome.bob,
    () => `verify() did not finish on both sides (alice ${outcome.alice}, bob ${outcome.bob}; ${describeRequests()}; cancellations ${JSON.stringify(cancelled)})`,
  );
  assert.deepEqual(outcome, { alice: "done", bob: "done" }, `the SAS failed (cancellations ${JSON.stringify(cancelled)})${failedRequests()}`);
  await waitFor(
    () => aliceRequest.phase === VerificationPhase.Done && bobRequest.phase === VerificationPhase.Done,
    () => `the requests never reached Done after m.key.verification.done (${describeRequests()})`,
  );

  for (const [client, other, label] of [[alice, bobId, "Alice"], [bob, aliceId, "Bob"]]) {
    await waitFor(
      async () => (await client.getCrypto().getUserVerificationStatus(other)).isCrossSigningVerified(),
      `${label} does not consider ${other} cross-signing verified after the SAS`,
    );
    const status = await client.getCrypto().getUserVerificationStatus(other);
    assert.ok(status.isVerified(), `${label}'s verification status of ${other}: ${JSON.stringify(status)}`);
  }

  // The verification events went through the DM in the clear, as the spec has it.
  const { status, json } = await api("GET", path`/_matrix/client/v3/rooms/${dmRoomId}/messages?dir=b&limit=50`, {
    token: aliceSession.access_token,
  });
  assert.equal(status, 200, `/messages in the DM: ${JSON.stringify(json)}`);
  const types = json.chunk.map((e) => (e.type === "m.room.message" ? `m.room.message/${e.content?.msgtype}` : e.type));
  for (const expected of [
    "m.room.message/m.key.verification.request",
    "m.key.verification.ready",
    "m.key.verification.start",
    "m.key.verification.accept",
    "m.key.verification.key",
    "m.key.verification.mac",
    "m.key.verification.done",
  ]) {
    assert.ok(types.includes(expected), `the DM has no ${expected} event: ${JSON.stringify(types)}`);
  }
});
