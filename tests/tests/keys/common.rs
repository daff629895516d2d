//! Key material, requests and `/sync` helpers shared by the key tests.

use std::time::Duration;

use cloister_tests::keys::{b64, sign_json};
use cloister_tests::Client;
use ed25519_dalek::SigningKey;
use serde_json::{json, Map, Value};

pub(crate) const WAIT: Duration = Duration::from_secs(20);
pub(crate) const PW: &str = "pw";

// ----- key material --------------------------------------------------------

/// A deterministic Ed25519 key.
pub(crate) fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub(crate) fn public(key: &SigningKey) -> String {
    b64(key.verifying_key().as_bytes())
}

/// Signs `v` in place as `user`/`key_id`, keeping other signatures.
pub(crate) fn sign(v: &mut Value, user: &str, key_id: &str, key: &SigningKey) {
    *v = sign_json(v, user, key_id, key);
}

/// Device keys for `c`'s device, self-signed with `key`; `curve` fills the
/// Curve25519 key, so a different `curve` is different key material.
pub(crate) fn device_keys(c: &Client, key: &SigningKey, curve: u8) -> Value {
    let mut v = json!({
        "user_id": c.user_id, "device_id": c.device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{}", c.device_id): b64(&[curve; 32]),
            format!("ed25519:{}", c.device_id): public(key),
        },
    });
    sign(&mut v, &c.user_id, &format!("ed25519:{}", c.device_id), key);
    v
}

/// A one-time key `[n; 32]` signed with `key` under `c`'s device key id.
pub(crate) fn otk(c: &Client, key: &SigningKey, n: u8) -> Value {
    let mut v = json!({ "key": b64(&[n; 32]) });
    sign(&mut v, &c.user_id, &format!("ed25519:{}", c.device_id), key);
    v
}

/// An unsigned cross-signing key of `usage`.
pub(crate) fn cs_key(user: &str, usage: &str, key: &SigningKey) -> Value {
    let p = public(key);
    json!({ "user_id": user, "usage": [usage], "keys": { format!("ed25519:{p}"): p } })
}

// ----- clients and sync ------------------------------------------------------

/// Registers `localpart` with password "pw", device `<LOCALPART>1` and the
/// device display name "Phone".
pub(crate) async fn register(url: &str, localpart: &str) -> Client {
    let body = json!({
        "username": localpart,
        "password": PW,
        "device_id": format!("{}1", localpart.to_uppercase()),
        "initial_device_display_name": "Phone",
    });
    Client::try_register(url, body)
        .await
        .unwrap_or_else(|(s, b)| panic!("registering {localpart} failed: {s} {b}"))
}

pub(crate) fn next_batch(sync: &Value) -> String {
    sync["next_batch"]
        .as_str()
        .unwrap_or_else(|| panic!("no next_batch: {sync}"))
        .to_owned()
}

pub(crate) fn device_list(sync: &Value, which: &str) -> Vec<String> {
    sync["device_lists"][which]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The current sync token of `c`.
pub(crate) async fn token(c: &Client) -> String {
    next_batch(&c.sync(None, 0).await)
}

/// Syncs from `since` until `device_lists.<which>` names `user`; returns
/// the next token.
pub(crate) async fn wait_device_list(c: &Client, since: &str, which: &str, user: &str) -> String {
    let found = c
        .sync_until(Some(since), WAIT, |s| {
            device_list(s, which).iter().any(|u| u == user)
        })
        .await;
    next_batch(&found)
}

pub(crate) fn password_auth(user_id: &str, password: &str, session: &Value) -> Value {
    json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": user_id },
        "password": password,
        "session": session,
    })
}

pub(crate) async fn upload(c: &Client, body: Value) -> (u16, Value) {
    c.post("/_matrix/client/v3/keys/upload", body).await
}

pub(crate) async fn query(c: &Client, users: &[&str]) -> Value {
    let wanted: Map<String, Value> = users.iter().map(|u| ((*u).to_owned(), json!([]))).collect();
    c.expect_ok(
        reqwest::Method::POST,
        "/_matrix/client/v3/keys/query",
        json!({ "device_keys": wanted }),
    )
    .await
}

pub(crate) const SIGNING_UPLOAD: &str = "/_matrix/client/v3/keys/device_signing/upload";
pub(crate) const SIGNATURES_UPLOAD: &str = "/_matrix/client/v3/keys/signatures/upload";
