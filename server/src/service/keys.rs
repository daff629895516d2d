//! Device keys, one-time keys and fallback keys: validated upload, query,
//! claim and the change feed. Cross-signing is in `service::cross_signing`.
//!
//! The server cannot check that a one-time key is a real Curve25519 key, but
//! it does check every signature it can: a device's keys must be signed by
//! the device itself, and signed one-time keys by that same device key, so a
//! leaked access token alone cannot swap in keys another device would trust.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::VerifyingKey;
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::service::session::Auth;
use crate::service::Context;
use crate::store::keys::{self, KeySignature};
use crate::store::rooms;
use cloister_proto::canonical::{decode_b64, decode_ed25519_key, verify_value as verify_signature};
use cloister_proto::keys::{
    KeysClaimRequest, KeysClaimResponse, KeysQueryRequest, KeysQueryResponse, KeysUploadRequest,
    KeysUploadResponse,
};
use cloister_proto::sync::DeviceLists;
use cloister_proto::tokens::SyncToken;

pub const MAX_ONE_TIME_KEYS_PER_UPLOAD: usize = 100;
const MAX_FALLBACK_KEYS_PER_UPLOAD: usize = 8;
const MAX_KEY_ID_LEN: usize = 255;
/// Serialized size caps; real keys are a few hundred bytes.
const MAX_DEVICE_KEYS_SIZE: usize = 16 * 1024;
const MAX_ONE_TIME_KEY_SIZE: usize = 4 * 1024;
const MAX_ALGORITHMS: usize = 16;
const MAX_CLAIMS_PER_REQUEST: usize = 10_000;

/// One-time key counts as the client sees them: the store counts rows in
/// `i64`, which is never negative.
pub fn wire_counts(counts: BTreeMap<String, i64>) -> BTreeMap<String, u64> {
    counts
        .into_iter()
        .map(|(algorithm, n)| (algorithm, u64::try_from(n).unwrap_or(0)))
        .collect()
}

/// The device's own Ed25519 key from its stored or uploaded device keys.
pub fn device_ed25519(device_keys: &Value, device_id: &str) -> Option<VerifyingKey> {
    device_keys
        .get("keys")?
        .get(format!("ed25519:{device_id}"))?
        .as_str()
        .and_then(decode_ed25519_key)
}

/// Checks uploaded device keys; returns them as stored (without `unsigned`)
/// with the device's Ed25519 key.
pub fn validate_device_keys(
    value: &Value,
    user_id: &str,
    device_id: &str,
) -> ApiResult<(Value, VerifyingKey)> {
    let Value::Object(map) = value else {
        return Err(ApiError::bad_json("device_keys must be an object"));
    };
    if map.get("user_id").and_then(Value::as_str) != Some(user_id) {
        return Err(ApiError::invalid_param(
            "device_keys.user_id must be your user id",
        ));
    }
    if map.get("device_id").and_then(Value::as_str) != Some(device_id) {
        return Err(ApiError::invalid_param(
            "device_keys.device_id must be the device of this access token",
        ));
    }
    let algorithms = map
        .get("algorithms")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_json("device_keys.algorithms must be a list"))?;
    if algorithms.is_empty()
        || algorithms.len() > MAX_ALGORITHMS
        || !algorithms
            .iter()
            .all(|a| a.as_str().is_some_and(|s| !s.is_empty() && s.len() <= 255))
    {
        return Err(ApiError::bad_json(
            "device_keys.algorithms must be a list of 1 to 16 algorithm names",
        ));
    }
    let key_map = map
        .get("keys")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::bad_json("device_keys.keys must be an object"))?;
    if key_map.len() > MAX_ALGORITHMS || key_map.values().any(|k| !k.is_string()) {
        return Err(ApiError::bad_json(
            "device_keys.keys must map at most 16 key ids to strings",
        ));
    }
    let ed_id = format!("ed25519:{device_id}");
    let ed25519 = device_ed25519(value, device_id).ok_or_else(|| {
        ApiError::invalid_param("device_keys.keys needs a valid ed25519:<device_id> key")
    })?;
    let curve_ok = key_map
        .get(&format!("curve25519:{device_id}"))
        .and_then(Value::as_str)
        .and_then(decode_b64)
        .is_some_and(|bytes| bytes.len() == 32);
    if !curve_ok {
        return Err(ApiError::invalid_param(
            "device_keys.keys needs a valid curve25519:<device_id> key",
        ));
    }
    if !map.get("signatures").is_some_and(Value::is_object) {
        return Err(ApiError::bad_json(
            "device_keys.signatures must be an object",
        ));
    }
    verify_signature(value, user_id, &ed_id, &ed25519).map_err(|e| {
        ApiError::invalid_param(format!("device_keys are not self-signed correctly: {e}"))
    })?;
    let mut cleaned = map.clone();
    cleaned.remove("unsigned");
    let cleaned = Value::Object(cleaned);
    if serde_json::to_string(&cleaned).map_or(0, |s| s.len()) > MAX_DEVICE_KEYS_SIZE {
        return Err(ApiError::invalid_param("device_keys are too large"));
    }
    Ok((cleaned, ed25519))
}

/// Whether a re-upload keeps the identity keys; anything else needs a new
/// device, or other devices' Olm sessions would silently go to new keys.
fn same_key_material(old: &Value, new: &Value) -> bool {
    let algorithms = |v: &Value| -> BTreeSet<String> {
        v.get("algorithms")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    old.get("keys") == new.get("keys") && algorithms(old) == algorithms(new)
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyEntry {
    pub algorithm: String,
    pub key_id: String,
    pub value: Value,
}

/// Parses `{"<algorithm>:<key id>": key}` as one-time or fallback keys. A
/// `signed_*` key must be an object signed by the device when `signing` (the
/// device's Ed25519 key) is known.
pub fn parse_key_entries(
    map: &BTreeMap<String, Value>,
    max: usize,
    what: &str,
    user_id: &str,
    device_id: &str,
    signing: Option<&VerifyingKey>,
) -> ApiResult<Vec<KeyEntry>> {
    if map.len() > max {
        return Err(ApiError::invalid_param(format!(
            "at most {max} {what} per request"
        )));
    }
    let signer_key_id = format!("ed25519:{device_id}");
    let mut entries = Vec::with_capacity(map.len());
    for (full_id, value) in map {
        let parsed = full_id
            .split_once(':')
            .filter(|(alg, id)| !alg.is_empty() && !id.is_empty());
        let Some((algorithm, key_id)) = parsed.filter(|_| {
            full_id.len() <= MAX_KEY_ID_LEN && full_id.bytes().all(|b| (0x21..=0x7e).contains(&b))
        }) else {
            return Err(ApiError::invalid_param(format!(
                "{what}: key ids must look like <algorithm>:<id>, printable ASCII up to {MAX_KEY_ID_LEN} bytes"
            )));
        };
        let signed = algorithm.starts_with("signed_");
        let size = serde_json::to_string(value).map_or(usize::MAX, |s| s.len());
        match value {
            Value::String(s) if !signed && !s.is_empty() => {}
            Value::Object(o) if o.get("key").and_then(Value::as_str).is_some_and(|k| !k.is_empty()) => {
                if let (true, Some(signing)) = (signed, signing) {
                    verify_signature(value, user_id, &signer_key_id, signing).map_err(|e| {
                        ApiError::invalid_param(format!(
                            "{what}: {full_id} is not signed by the device: {e}"
                        ))
                    })?;
                }
            }
            _ => {
                return Err(ApiError::bad_json(format!(
                    "{what}: {full_id} must be a key string, or an object with a \"key\" (and signatures for signed_ algorithms)"
                )))
            }
        }
        if size > MAX_ONE_TIME_KEY_SIZE {
            return Err(ApiError::invalid_param(format!(
                "{what}: {full_id} is too large"
            )));
        }
        entries.push(KeyEntry {
            algorithm: algorithm.to_owned(),
            key_id: key_id.to_owned(),
            value: value.clone(),
        });
    }
    Ok(entries)
}

/// `POST /keys/upload`: stores the keys and returns the device's one-time
/// key counts.
pub async fn upload(
    state: &Context,
    auth: &Auth,
    request: KeysUploadRequest,
) -> ApiResult<KeysUploadResponse> {
    let (user_id, device_id) = (auth.user_id.as_str(), auth.device_id.as_str());
    let new_keys = request
        .device_keys
        .as_ref()
        .map(|v| validate_device_keys(v, user_id, device_id))
        .transpose()?;
    let stored = keys::get_device_keys(&mut *state.store.read().await?, user_id, device_id).await?;
    let signing = match (&new_keys, &stored) {
        (Some((_, key)), _) => Some(*key),
        (None, Some(stored)) => device_ed25519(stored, device_id),
        (None, None) => None,
    };
    let one_time = parse_key_entries(
        &request.one_time_keys,
        MAX_ONE_TIME_KEYS_PER_UPLOAD,
        "one_time_keys",
        user_id,
        device_id,
        signing.as_ref(),
    )?;
    let fallback = parse_key_entries(
        &request.fallback_keys,
        MAX_FALLBACK_KEYS_PER_UPLOAD,
        "fallback_keys",
        user_id,
        device_id,
        signing.as_ref(),
    )?;
    let algorithms: BTreeSet<&str> = fallback.iter().map(|e| e.algorithm.as_str()).collect();
    if algorithms.len() != fallback.len() {
        return Err(ApiError::invalid_param(
            "fallback_keys: at most one key per algorithm",
        ));
    }

    let mut tx = state.store.write().await?;
    let mut changed = false;
    if let Some((new, _)) = &new_keys {
        let old = match keys::get_device_keys(tx.conn(), user_id, device_id).await? {
            Some(old) => Some(old),
            None if keys::insert_device_keys(&mut tx, user_id, device_id, new).await? => {
                // A device id reused after deletion starts without signatures.
                keys::delete_signatures_on(&mut tx, user_id, device_id).await?;
                changed = true;
                None
            }
            // A concurrent upload stored keys first.
            None => keys::get_device_keys(tx.conn(), user_id, device_id).await?,
        };
        match old {
            Some(old) if old == *new => {}
            Some(old) if !same_key_material(&old, new) => return Err(ApiError::invalid_param(
                "this device already has different keys; log in as a new device to use new keys",
            )),
            Some(_) => {
                keys::put_device_keys(&mut tx, user_id, device_id, new).await?;
                changed = true;
            }
            None => {}
        }
    }
    for e in &one_time {
        let (alg, id) = (&e.algorithm, &e.key_id);
        if keys::insert_one_time_key(&mut tx, user_id, device_id, alg, id, &e.value).await? {
            continue;
        }
        // Gone again means a concurrent claim took it: fine, not re-added.
        let existing = keys::get_one_time_key(tx.conn(), user_id, device_id, alg, id).await?;
        if existing.is_some_and(|old| old != e.value) {
            return Err(ApiError::invalid_param(format!(
                "one-time key {alg}:{id} already exists with different content"
            )));
        }
    }
    for e in &fallback {
        // Re-uploading the current fallback key must not mark it unused
        // again: it may already have been handed out.
        match keys::get_fallback_key(tx.conn(), user_id, device_id, &e.algorithm).await? {
            Some((id, old)) if id == e.key_id && old == e.value => {}
            _ => {
                keys::put_fallback_key(
                    &mut tx,
                    user_id,
                    device_id,
                    &e.algorithm,
                    &e.key_id,
                    &e.value,
                )
                .await?
            }
        }
    }
    let counts = keys::one_time_key_counts(tx.conn(), user_id, device_id).await?;
    let interested = if changed {
        keys::record_device_list_change(&mut tx, user_id).await?;
        rooms::users_sharing_rooms(tx.conn(), user_id).await?
    } else {
        Vec::new()
    };
    tx.commit().await?;
    state.notifier.notify(interested.iter().map(String::as_str));
    Ok(KeysUploadResponse {
        one_time_key_counts: wire_counts(counts),
    })
}

/// The single public key of a cross-signing key object.
pub fn cross_signing_public_key(key: &Value) -> Option<&str> {
    let keys = key.get("keys")?.as_object()?;
    if keys.len() != 1 {
        return None;
    }
    keys.values().next()?.as_str()
}

/// Adds the stored signatures on `target_key` to `value.signatures`.
fn merge_signatures(value: &mut Value, signatures: &[KeySignature], target_key: &str) {
    let Value::Object(map) = value else { return };
    for sig in signatures.iter().filter(|s| s.target_key == target_key) {
        let all = map
            .entry("signatures")
            .or_insert_with(|| Value::Object(Map::new()));
        if !all.is_object() {
            *all = Value::Object(Map::new());
        }
        let by_user = all
            .as_object_mut()
            .expect("just made an object")
            .entry(sig.signer_user.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(by_user) = by_user {
            by_user.insert(sig.signer_key.clone(), Value::String(sig.signature.clone()));
        }
    }
}

/// `POST /keys/query`. `device_keys` maps user ids to device ids (empty:
/// all); without federation, `timeout` has nothing to bound.
pub async fn query(
    state: &Context,
    auth: &Auth,
    request: &KeysQueryRequest,
) -> ApiResult<KeysQueryResponse> {
    let mut conn = state.store.read().await?;
    let mut response = KeysQueryResponse::default();
    for (user_id, wanted) in &request.device_keys {
        // Without federation there is nobody to ask about remote users.
        if !state.is_local_user(user_id) {
            continue;
        }
        // Signatures made with a user-signing key are only for its owner.
        let signatures: Vec<KeySignature> = keys::signatures_on(&mut conn, user_id)
            .await?
            .into_iter()
            .filter(|s| s.signer_user == *user_id || s.signer_user == auth.user_id)
            .collect();
        let mut devices = BTreeMap::new();
        for device in keys::device_keys_for_user(&mut conn, user_id).await? {
            if !wanted.is_empty() && !wanted.contains(&device.device_id) {
                continue;
            }
            let mut value = device.keys;
            merge_signatures(&mut value, &signatures, &device.device_id);
            if let (Some(name), Value::Object(map)) = (device.display_name, &mut value) {
                map.insert("unsigned".into(), json!({ "device_display_name": name }));
            }
            devices.insert(device.device_id, value);
        }
        response.device_keys.insert(user_id.clone(), devices);
        let mut key_types = vec![
            ("master", &mut response.master_keys),
            ("self_signing", &mut response.self_signing_keys),
        ];
        if *user_id == auth.user_id {
            key_types.push(("user_signing", &mut response.user_signing_keys));
        }
        for (key_type, out) in key_types {
            if let Some(mut key) = keys::get_cross_signing_key(&mut conn, user_id, key_type).await?
            {
                if let Some(public) = cross_signing_public_key(&key).map(str::to_owned) {
                    merge_signatures(&mut key, &signatures, &public);
                }
                out.insert(user_id.clone(), key);
            }
        }
    }
    Ok(response)
}

/// `POST /keys/claim`. `one_time_keys` maps user → device → algorithm;
/// without federation, `timeout` has nothing to bound.
pub async fn claim(state: &Context, request: &KeysClaimRequest) -> ApiResult<KeysClaimResponse> {
    let request = &request.one_time_keys;
    let total: usize = request.values().map(BTreeMap::len).sum();
    if total > MAX_CLAIMS_PER_REQUEST {
        return Err(ApiError::invalid_param(format!(
            "at most {MAX_CLAIMS_PER_REQUEST} keys can be claimed per request"
        )));
    }
    let mut tx = state.store.write().await?;
    let mut claimed = BTreeMap::new();
    for (user_id, devices) in request {
        if !state.is_local_user(user_id) {
            continue;
        }
        let mut per_device = BTreeMap::new();
        for (device_id, algorithm) in devices {
            if algorithm.is_empty() || algorithm.len() > MAX_KEY_ID_LEN {
                return Err(ApiError::invalid_param("invalid key algorithm"));
            }
            if let Some((key_id, key)) =
                keys::claim_key(&mut tx, user_id, device_id, algorithm).await?
            {
                let key = BTreeMap::from([(format!("{algorithm}:{key_id}"), key)]);
                per_device.insert(device_id.clone(), key);
            }
        }
        if !per_device.is_empty() {
            claimed.insert(user_id.clone(), per_device);
        }
    }
    tx.commit().await?;
    // Their syncs report the lower count, so their devices top keys up soon.
    state.notifier.notify(claimed.keys().map(String::as_str));
    Ok(KeysClaimResponse {
        failures: BTreeMap::new(),
        one_time_keys: claimed,
    })
}

/// `GET /keys/changes`: users whose keys changed between two sync tokens,
/// among those the caller shares a room with, and those it stopped sharing
/// every room with.
pub async fn changes(
    state: &Context,
    user_id: &str,
    from: &str,
    to: &str,
) -> ApiResult<DeviceLists> {
    let pos = |token: &str, name: &str| {
        SyncToken::parse(token)
            .map(|t| t.pos)
            .ok_or_else(|| ApiError::invalid_param(format!("{name} is not a valid sync token")))
    };
    let (from, to) = (pos(from, "from")?, pos(to, "to")?);
    let mut conn = state.store.read().await?;
    let mut changed = keys::changed_users_sharing_rooms(&mut conn, user_id, from, to).await?;
    changed.sort();
    changed.dedup();
    let mut left = Vec::new();
    for other in keys::users_who_left_shared_rooms(&mut conn, user_id, from, to).await? {
        if changed.binary_search(&other).is_err()
            && !rooms::share_a_room(&mut conn, user_id, &other).await?
        {
            left.push(other);
        }
    }
    Ok(DeviceLists { changed, left })
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
