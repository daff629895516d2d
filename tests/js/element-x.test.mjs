// matrix-js-sdk (Element Web's library) and matrix-sdk / matrix-sdk-ui
// (Element X's) in one encrypted room on Cloister: a message Alice sends
// from matrix-js-sdk is decrypted in the matrix-sdk-ui Timeline over
// simplified sliding sync, and the answer sent from that Timeline is
// decrypted by matrix-js-sdk. Element X's side is the element-x-probe
// binary of tests/element-x (ELEMENT_X_PROBE; scripts/test-js.sh builds it
// when unset), driven line by line over stdin/stdout.
//
// Run: CLOISTER_URL=… ELEMENT_X_PROBE=target/debug/element-x-probe node --test tests/js/element-x.test.mjs

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import {
  BASE,
  randomSuffix,
  register,
  startClient,
  step,
  stopClients,
  waitFor,
  waitForDecrypted,
  waitForDeviceKeys,
} from "./support.mjs";

const PROBE = process.env.ELEMENT_X_PROBE ?? "";
const PASSWORD = "element-x-probe-password";
const TIMEOUT = 180_000;

let probe = null;

after(() => {
  stopClients();
  probe?.stdin.end();
  probe?.kill();
});

/** The probe's stdout, a line at a time: next(prefix) waits for the next line with that prefix. */
function lines(child) {
  const seen = [];
  const waiting = [];
  createInterface({ input: child.stdout }).on("line", (line) => {
    seen.push(line);
    for (const w of waiting.splice(0)) w();
  });
  let stderr = "";
  child.stderr.on("data", (chunk) => (stderr = (stderr + chunk).slice(-4000)));
  return {
    async next(prefix, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const i = seen.findIndex((l) => l.startsWith(`${prefix} `));
        if (i >= 0) return seen.splice(i, 1)[0].slice(prefix.length + 1);
        if (child.exitCode !== null) throw new Error(`element-x-probe exited (${child.exitCode}) before ${prefix}:\n${stderr}`);
        if (Date.now() > deadline) throw new Error(`element-x-probe printed no ${prefix} within ${timeoutMs} ms; stdout ${JSON.stringify(seen)}\n${stderr}`);
        await new Promise((resolve) => {
          waiting.push(resolve);
          setTimeout(resolve, 200);
        });
      }
    },
  };
}

test("matrix-js-sdk and matrix-sdk-ui decrypt each other in one room", { skip: !BASE && "CLOISTER_URL is not set", timeout: TIMEOUT }, async () => {
  assert.ok(PROBE, "set ELEMENT_X_PROBE to the element-x-probe binary (scripts/test-js.sh does)");
  const suffix = randomSuffix();
  const alice = await register(`ex_alice_${suffix}`, PASSWORD, "element-x");
  const bob = await register(`ex_bob_${suffix}`, PASSWORD, "element-x");

  probe = spawn(PROBE, [BASE, `ex_bob_${suffix}`, PASSWORD], { stdio: ["pipe", "pipe", "pipe"] });
  const out = lines(probe);
  const bobDevice = await out.next("READY");
  const bobSession = { user_id: bob.user_id, device_id: bobDevice };
  await waitForDeviceKeys(alice, bobSession, "Element X");

  const client = await startClient("alice (matrix-js-sdk)", alice);
  const { room_id: roomId } = await step("alice's createRoom", () => client.createRoom({ name: "js and Element X", invite: [bob.user_id] }));
  assert.equal(await out.next("JOINED"), roomId);
  await waitFor(
    () => client.getRoom(roomId)?.getMember(bob.user_id)?.membership === "join",
    "alice's client never saw Element X join",
  );
  await waitFor(() => client.getCrypto().isEncryptionEnabledInRoom(roomId), "the room is not encrypted for alice");

  const hello = `hello Element X, from matrix-js-sdk ${suffix}`;
  const sent = await step("alice's sendTextMessage", () => client.sendTextMessage(roomId, hello));
  const onServer = await fetch(`${BASE}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(sent.event_id)}`, {
    headers: { Authorization: `Bearer ${alice.access_token}` },
  }).then((r) => r.json());
  assert.equal(onServer.type, "m.room.encrypted", "the server holds ciphertext");
  assert.equal(await out.next("DECRYPTED"), hello);

  const answerId = await out.next("SENT");
  const answer = await waitForDecrypted(client, "alice (matrix-js-sdk)", roomId, answerId);
  assert.equal(answer.getClearContent().body, "answered from Element X's timeline");
  assert.equal(answer.getSender(), bob.user_id);
});
