// Element's flows for finding people and rooms through matrix-js-sdk (Rust
// crypto), against the homeserver at CLOISTER_URL:
//   - "Start chat" → searching the user directory (searchUserDirectory):
//     someone who shares a room with the searcher is found with their
//     display name, a stranger is not, until they share a room;
//   - a space with a room restricted to the space's members: a member reads
//     the space's hierarchy through the SDK's RoomHierarchy (Element's space
//     home), joins the child without an invite and ends up in an encrypted
//     room; someone outside the space is refused.
//
// Run: CLOISTER_URL=http://127.0.0.1:8008 node --test tests/js/directory-flows.test.mjs
// (scripts/test-js.sh builds and starts a server and does this for you.)
// CLOISTER_JS_VERBOSE=1 keeps the SDK's debug/info logging. The clients and
// the helpers they use live in support.mjs.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import {
  BASE,
  api,
  path,
  randomSuffix,
  register,
  sdk,
  sharedEncryptedRoom,
  sleep,
  startClient,
  step,
  stopClients,
  waitFor,
  waitForDecrypted,
  waitForDeviceKeys,
} from "./support.mjs";

// Element imports RoomHierarchy from the SDK's room-hierarchy module (the
// package's index does not export it); loaded after support.mjs, which
// quiets the SDK before it loads.
const { RoomHierarchy } = await import("matrix-js-sdk/lib/room-hierarchy.js");

const SETUP_TIMEOUT_MS = 120_000;
const TEST_TIMEOUT_MS = 90_000;
/** How long the directory may take to reflect a new shared room. */
const DIRECTORY_TIMEOUT_MS = 15_000;

const ctx = {};

before(
  async () => {
    assert.ok(BASE, "set CLOISTER_URL to the homeserver's base URL, e.g. http://127.0.0.1:8008");
    const suffix = randomSuffix();
    ctx.suffix = suffix;
    ctx.aliceSession = await register(`alice-dir-${suffix}`, `alice-password-${suffix}`, "directory-flows");
    ctx.bobSession = await register(`bob-dir-${suffix}`, `bob-password-${suffix}`, "directory-flows");
    ctx.carolSession = await register(`carol-dir-${suffix}`, `carol-password-${suffix}`, "directory-flows");
    ctx.daveSession = await register(`dave-dir-${suffix}`, `dave-password-${suffix}`, "directory-flows");
    ctx.alice = await startClient("alice", ctx.aliceSession);
    ctx.bob = await startClient("bob", ctx.bobSession);
    ctx.carol = await startClient("carol", ctx.carolSession);
    ctx.dave = await startClient("dave", ctx.daveSession);
  },
  { timeout: SETUP_TIMEOUT_MS },
);

after(stopClients);

// ---------------------------------------------------------------------------
// a. Searching the user directory

/**
 * Alice's searchUserDirectory, as Element's "Start chat" dialog calls it
 * while the user types; returns the response after checking its shape.
 */
async function aliceSearches(term, limit) {
  const response = await step(`Alice's searchUserDirectory({ term: ${JSON.stringify(term)}, limit: ${limit} })`, () =>
    ctx.alice.searchUserDirectory({ term, limit }),
  );
  assert.ok(Array.isArray(response?.results), `POST /user_directory/search answered without results: ${JSON.stringify(response)}`);
  assert.equal(typeof response.limited, "boolean", `POST /user_directory/search answered without limited: ${JSON.stringify(response)}`);
  assert.ok(response.results.length <= limit, `${response.results.length} results for limit ${limit}: ${JSON.stringify(response)}`);
  for (const user of response.results) {
    assert.equal(typeof user.user_id, "string", `a result without user_id: ${JSON.stringify(response)}`);
  }
  return response;
}

/** Searches until `userId` is among the results (the directory may lag a join); checks at most twice a second. */
async function waitUntilFound(term, limit, userId, what) {
  let last = null;
  return waitFor(
    async () => {
      if (last) await sleep(300); // stay within the directory's search rate (2/s, burst 30)
      last = await aliceSearches(term, limit);
      return last.results.find((u) => u.user_id === userId) ? last : null;
    },
    () => `${what}: Alice's searchUserDirectory({ term: ${JSON.stringify(term)} }) never listed ${userId}; last answer ${JSON.stringify(last)}`,
    DIRECTORY_TIMEOUT_MS,
  );
}

test("Alice finds Carol, who shares a room with her, in the user directory, and Dave only once they share a room", { timeout: TEST_TIMEOUT_MS }, async () => {
  const { alice, carol, dave, suffix, carolSession, daveSession } = ctx;
  const carolId = carolSession.user_id;
  const daveId = daveSession.user_id;

  // Both pick a display name with the same (unique) surname, so that one
  // term matches both and only the shared room decides who is found.
  const surname = `Zq${suffix}`;
  const carolName = `Carol ${surname}`;
  const daveName = `Dave ${surname}`;
  await step("Carol's setDisplayName", () => carol.setDisplayName(carolName));
  await step("Dave's setDisplayName", () => dave.setDisplayName(daveName));

  await sharedEncryptedRoom({
    inviter: alice,
    inviterLabel: "Alice",
    invitee: carol,
    inviteeLabel: "Carol",
    inviteeUserId: carolId,
    createOptions: { name: "alice and carol", preset: sdk.Preset.PrivateChat },
  });

  // Part of the display name, lower case: Element searches as typed.
  const term = surname.toLowerCase();
  const found = await waitUntilFound(term, 10, carolId, "Carol shares a room with Alice");
  const carolResult = found.results.find((u) => u.user_id === carolId);
  assert.equal(carolResult.display_name, carolName, `Carol's result: ${JSON.stringify(carolResult)}`);
  assert.ok(
    !found.results.some((u) => u.user_id === daveId),
    `Dave shares no room with Alice and is in no published room, yet the directory lists him: ${JSON.stringify(found)}`,
  );
  assert.equal(found.results.length, 1, `only Carol matches ${JSON.stringify(term)} for Alice: ${JSON.stringify(found)}`);
  assert.equal(found.limited, false, `one match of limit 10 is not limited: ${JSON.stringify(found)}`);

  // Part of the localpart finds her too (the display name comes along).
  const byLocalpart = await aliceSearches(`carol-dir-${suffix.slice(0, 6)}`, 10);
  const carolByLocalpart = byLocalpart.results.find((u) => u.user_id === carolId);
  assert.ok(carolByLocalpart, `searching part of Carol's localpart does not find her: ${JSON.stringify(byLocalpart)}`);
  assert.equal(carolByLocalpart.display_name, carolName);
  const daveByLocalpart = await aliceSearches(`dave-dir-${suffix}`, 10);
  assert.deepEqual(daveByLocalpart.results, [], `Dave's full localpart finds him before he shares a room: ${JSON.stringify(daveByLocalpart)}`);

  // Once Dave joins a room with Alice, he is found as well.
  await sharedEncryptedRoom({
    inviter: alice,
    inviterLabel: "Alice",
    invitee: dave,
    inviteeLabel: "Dave",
    inviteeUserId: daveId,
    createOptions: { name: "alice and dave", preset: sdk.Preset.PrivateChat },
  });
  const both = await waitUntilFound(term, 10, daveId, "Dave joined a room with Alice");
  const daveResult = both.results.find((u) => u.user_id === daveId);
  assert.equal(daveResult.display_name, daveName, `Dave's result: ${JSON.stringify(daveResult)}`);
  assert.deepEqual(
    both.results.map((u) => u.user_id).sort(),
    [carolId, daveId].sort(),
    `Alice should find exactly Carol and Dave: ${JSON.stringify(both)}`,
  );
  assert.equal(both.limited, false);

  // The limit holds, and `limited` says there was more.
  const one = await aliceSearches(term, 1);
  assert.equal(one.results.length, 1, `limit 1: ${JSON.stringify(one)}`);
  assert.equal(one.limited, true, `two matches with limit 1 must be limited: ${JSON.stringify(one)}`);

  // Every word of the term must begin a word of the name: "zq… dave" is Dave only.
  const twoWords = await aliceSearches(`${term} dave`, 10);
  assert.deepEqual(twoWords.results.map((u) => u.user_id), [daveId], `every word of the term must match: ${JSON.stringify(twoWords)}`);
});

// ---------------------------------------------------------------------------
// b. Joining a room from a space

test("Bob joins a space, reads its hierarchy, and joins its members-only room without an invite; Dave is refused", { timeout: TEST_TIMEOUT_MS }, async () => {
  const { alice, bob, dave, suffix, aliceSession, bobSession, daveSession } = ctx;
  const bobId = bobSession.user_id;
  const serverName = alice.getDomain();
  assert.ok(serverName, `Alice's client knows no server name (user id ${aliceSession.user_id})`);

  // The space, as Element's "Create a space" → private makes it
  // (m.space room type, only admins post to its timeline).
  const spaceName = `Space ${suffix}`;
  const { room_id: spaceId } = await step("Alice's createRoom of a space (creation_content.type m.space)", () =>
    alice.createRoom({
      name: spaceName,
      preset: sdk.Preset.PrivateChat,
      creation_content: { type: sdk.RoomType.Space },
      power_level_content_override: { events_default: 100, invite: 50 },
    }),
  );
  const space = await waitFor(
    () => alice.getRoom(spaceId)?.isSpaceRoom() && alice.getRoom(spaceId),
    `Alice's client never saw the space ${spaceId} as a space (m.room.create type m.space in /sync)`,
  );
  assert.equal(space.getMyMembership(), "join");

  // The child, as Element's "Add room" in a space makes one visible to the
  // space's members: join rule restricted to the space, m.space.parent in
  // the initial state, then m.space.child in the space with `via`.
  // Element asks for room version "9" here (its
  // PreferredRoomVersions.RestrictedRooms), and so does this test.
  const childName = `Members only ${suffix}`;
  const { room_id: childId } = await step("Alice's createRoom of a room restricted to the space's members", () =>
    alice.createRoom({
      name: childName,
      room_version: "9",
      preset: sdk.Preset.PrivateChat,
      initial_state: [
        { type: sdk.EventType.SpaceParent, state_key: spaceId, content: { canonical: true, via: [serverName] } },
        {
          type: sdk.EventType.RoomJoinRules,
          state_key: "",
          content: { join_rule: sdk.JoinRule.Restricted, allow: [{ type: sdk.RestrictedAllowType.RoomMembership, room_id: spaceId }] },
        },
      ],
    }),
  );
  await step("Alice's m.space.child sendStateEvent (PUT /rooms/{space}/state/m.space.child/{child})", () =>
    alice.sendStateEvent(spaceId, sdk.EventType.SpaceChild, { via: [serverName], suggested: true }, childId),
  );

  // Bob is invited to the space and accepts, as from Element's invite.
  await step("Alice's invite of Bob to the space", () => alice.invite(spaceId, bobId));
  await waitFor(
    () => bob.getRoom(spaceId)?.getMyMembership() === "invite",
    "Bob's client never saw the invite to the space in /sync (rooms.invite)",
  );
  await step("Bob's joinRoom of the space", () => bob.joinRoom(spaceId));
  await waitFor(
    () => bob.getRoom(spaceId)?.getMyMembership() === "join" && bob.getRoom(spaceId).isSpaceRoom(),
    "Bob's client does not show him joined to the space (or not as a space) after joinRoom",
  );
  assert.equal(bob.getRoom(childId), null, "Bob must not know the child room before he joins it");

  // Element's space home: RoomHierarchy over GET /v1/rooms/{space}/hierarchy.
  const hierarchy = new RoomHierarchy(bob.getRoom(spaceId), 50);
  const rooms = await step("Bob's RoomHierarchy.load (GET /v1/rooms/{spaceId}/hierarchy)", () => hierarchy.load());
  assert.equal(hierarchy.noSupport, false, "the SDK thinks the server has no /hierarchy (M_UNRECOGNIZED)");
  const describeRooms = () => JSON.stringify(rooms);
  assert.equal(rooms[0]?.room_id, spaceId, `the hierarchy must start with the space: ${describeRooms()}`);
  assert.equal(rooms[0].room_type, "m.space", `the space's room_type: ${describeRooms()}`);
  assert.equal(rooms[0].name, spaceName, `the space's name: ${describeRooms()}`);
  const child = hierarchy.roomMap.get(childId);
  assert.ok(child, `Bob's hierarchy of the space does not list the restricted child ${childId}: ${describeRooms()}`);
  assert.equal(child.name, childName, `the child's name in the hierarchy: ${JSON.stringify(child)}`);
  assert.equal(child.join_rule, "restricted", `the child's join_rule in the hierarchy: ${JSON.stringify(child)}`);
  assert.equal(child.num_joined_members, 1, `the child's num_joined_members before Bob joins: ${JSON.stringify(child)}`);
  assert.equal(typeof child.world_readable, "boolean", `world_readable is required: ${JSON.stringify(child)}`);
  assert.equal(typeof child.guest_can_join, "boolean", `guest_can_join is required: ${JSON.stringify(child)}`);
  assert.ok(Array.isArray(child.children_state), `children_state is required: ${JSON.stringify(child)}`);
  assert.ok(hierarchy.getRelation(spaceId, childId), `the space's children_state has no m.space.child for the child: ${describeRooms()}`);
  assert.equal(hierarchy.isSuggested(spaceId, childId), true, "the m.space.child's suggested flag");
  assert.deepEqual([...(hierarchy.viaMap.get(childId) ?? [])], [serverName], "the SDK's via servers for the child");
  assert.deepEqual(hierarchy.backRefs.get(childId), [spaceId], "the SDK's parent of the child");

  // Element's "Join" button in the space home: joinRoom with the via servers, no invite.
  const joined = await step("Bob's joinRoom of the restricted child without an invite (POST /join/{roomId}?via=…)", () =>
    bob.joinRoom(childId, { viaServers: [...hierarchy.viaMap.get(childId)] }),
  );
  assert.equal(joined.roomId, childId);
  const childRoom = await waitFor(
    () => bob.getRoom(childId)?.getMyMembership() === "join" && bob.getRoom(childId),
    () => `Bob's client does not show membership join in the child room (it shows ${bob.getRoom(childId)?.getMyMembership()})`,
  );
  assert.equal(childRoom.name, childName, "Bob's client's name of the child room");
  await waitFor(
    () => bob.getCrypto().isEncryptionEnabledInRoom(childId),
    "Bob's client does not consider the child room encrypted (no m.room.encryption in its state)",
  );
  const bobMember = childRoom.currentState.getStateEvents(sdk.EventType.RoomMember, bobId);
  assert.equal(
    bobMember?.getContent().join_authorised_via_users_server,
    aliceSession.user_id,
    `Bob's restricted join must name who authorised it (the only member who may invite): ${JSON.stringify(bobMember?.getContent())}`,
  );
  await waitFor(
    () => alice.getRoom(childId)?.getMember(bobId)?.membership === "join",
    "Alice's client never saw Bob's join of the child room in /sync",
  );

  // The room works as an encrypted room: Alice's next message reaches Bob decrypted.
  await waitForDeviceKeys(aliceSession, bobSession, "Bob");
  const text = `welcome to the space's room ${randomSuffix()}`;
  const { event_id: eventId } = await step("Alice's encrypted sendMessage in the child room", () =>
    alice.sendMessage(childId, { msgtype: "m.text", body: text }),
  );
  const event = await waitForDecrypted(bob, "Bob", childId, eventId);
  assert.equal(event.getWireType(), "m.room.encrypted", "Alice's message in the child room must have travelled encrypted");
  assert.equal(event.getContent().body, text);

  // Dave is in no room of the allow list: no hierarchy, and no join.
  const daveHierarchy = await dave.getRoomHierarchy(spaceId).then(
    (r) => ({ ok: r }),
    (e) => ({ error: e }),
  );
  assert.equal(
    daveHierarchy.error?.httpStatus,
    403,
    `Dave, outside the private space, must not read its hierarchy: ${JSON.stringify(daveHierarchy.ok ?? daveHierarchy.error?.data)}`,
  );
  const refused = await dave.joinRoom(childId, { viaServers: [serverName] }).then(
    () => null,
    (e) => e,
  );
  assert.ok(refused, "Dave, who is not in the space, joined the restricted room without an invite");
  assert.equal(refused.httpStatus, 403, `Dave's join: HTTP ${refused.httpStatus} ${JSON.stringify(refused.data)}`);
  assert.equal(refused.errcode, "M_FORBIDDEN", `Dave's join: ${JSON.stringify(refused.data)}`);
  const daveMembership = await api("GET", path`/_matrix/client/v3/rooms/${childId}/state/m.room.member/${daveSession.user_id}`, {
    token: aliceSession.access_token,
  });
  assert.equal(daveMembership.status, 404, `Dave must have no membership in the child: ${JSON.stringify(daveMembership.json)}`);
});
