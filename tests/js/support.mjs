// Helpers shared by the interop tests: raw client-server API calls and
// registration against CLOISTER_URL, unpadded base64, and Matrix v2
// attachment encryption (AES-CTR-256 + SHA-256) with WebCrypto.

import assert from "node:assert/strict";
import { webcrypto as crypto } from "node:crypto";

const BASE = (process.env.CLOISTER_URL ?? "").replace(/\/+$/, "");

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
  const text = await response.text();
  let json;
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    json = { non_json_body: text.slice(0, 300) };
  }
  return { status: response.status, json };
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
