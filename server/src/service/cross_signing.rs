//! Cross-signing: the master, self-signing and user-signing keys, and the
//! signatures clients upload with them.
//!
//! Every signature is verified before it is stored: the server is where
//! other users' clients fetch these keys, and a stored bad signature would
//! make them distrust (or, worse, trust) the wrong device.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;
use ed25519_dalek::VerifyingKey;
use serde_json::{json, Map, Value};
use sqlx::AnyConnection;

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::service::keys::{cross_signing_public_key, device_ed25519};
use crate::service::session::Auth;
use crate::service::Context;
use crate::service::{oauth, uia};
use crate::store::keys::{self, KeySignature};
use crate::store::rooms;
use cloister_proto::canonical::{
    decode_ed25519_key, signable_value as signable_bytes, verify_value as verify_signature,
};
use cloister_proto::keys::{SignaturesUploadResponse, SigningKeysUploadRequest};

pub const MASTER: &str = "master";
pub const SELF_SIGNING: &str = "self_signing";
pub const USER_SIGNING: &str = "user_signing";

const MAX_KEY_SIZE: usize = 16 * 1024;
const MAX_SIGNED_OBJECTS: usize = 1000;

#[derive(Debug, Clone)]
pub struct CrossSigningKey {
    /// As stored: the upload without `unsigned`.
    pub value: Value,
    pub public_key: String,
    pub verifying: VerifyingKey,
}

impl CrossSigningKey {
    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.public_key)
    }
}

/// Reads a stored key back; None if it no longer parses (never expected).
fn from_stored(value: Value) -> Option<CrossSigningKey> {
    let public_key = cross_signing_public_key(&value)?.to_owned();
    let verifying = decode_ed25519_key(&public_key)?;
    Some(CrossSigningKey {
        value,
        public_key,
        verifying,
    })
}

async fn stored_key(
    c: &mut AnyConnection,
    user_id: &str,
    key_type: &str,
) -> Result<Option<CrossSigningKey>, sqlx::Error> {
    Ok(keys::get_cross_signing_key(c, user_id, key_type)
        .await?
        .and_then(from_stored))
}

/// Checks the shape of an uploaded cross-signing key of `usage`.
pub fn validate_cross_signing_key(
    value: &Value,
    user_id: &str,
    usage: &str,
) -> ApiResult<CrossSigningKey> {
    let Value::Object(map) = value else {
        return Err(ApiError::bad_json(format!(
            "the {usage} key must be an object"
        )));
    };
    if map.get("user_id").and_then(Value::as_str) != Some(user_id) {
        return Err(ApiError::invalid_param(format!(
            "the {usage} key's user_id must be your user id"
        )));
    }
    let usages = map
        .get("usage")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_json(format!("the {usage} key needs a usage list")))?;
    if usages.len() > 8 || !usages.iter().any(|u| u.as_str() == Some(usage)) {
        return Err(ApiError::invalid_param(format!(
            "the {usage} key's usage must include \"{usage}\""
        )));
    }
    let key_map = map
        .get("keys")
        .and_then(Value::as_object)
        .filter(|k| k.len() == 1)
        .ok_or_else(|| {
            ApiError::invalid_param(format!("the {usage} key must hold exactly one key"))
        })?;
    let (key_id, public_key) = key_map.iter().next().expect("exactly one entry");
    let public_key = public_key.as_str().unwrap_or_default();
    let verifying = decode_ed25519_key(public_key)
        .filter(|_| key_id.strip_prefix("ed25519:") == Some(public_key))
        .ok_or_else(|| {
            ApiError::invalid_param(format!(
                "the {usage} key must be one Ed25519 key, as \"ed25519:<key>\": \"<key>\""
            ))
        })?;
    if map.get("signatures").is_some_and(|s| !s.is_object()) {
        return Err(ApiError::bad_json("signatures must be an object"));
    }
    let mut cleaned = map.clone();
    cleaned.remove("unsigned");
    let value = Value::Object(cleaned);
    if serde_json::to_string(&value).map_or(0, |s| s.len()) > MAX_KEY_SIZE {
        return Err(ApiError::invalid_param(format!(
            "the {usage} key is too large"
        )));
    }
    Ok(CrossSigningKey {
        public_key: public_key.to_owned(),
        verifying,
        value,
    })
}

/// `POST /keys/device_signing/upload`. User-interactive auth is needed to
/// replace keys, but not to set them up the first time or to upload the
/// same keys again (MSC3967, in the spec since v1.11).
pub async fn upload_signing_keys(
    state: &Context,
    auth: &Auth,
    body: SigningKeysUploadRequest,
) -> ApiResult<()> {
    let user_id = auth.user_id.as_str();
    let validate = |v: &Option<Value>, usage| {
        v.as_ref()
            .filter(|v| !v.is_null())
            .map(|v| validate_cross_signing_key(v, user_id, usage))
            .transpose()
    };
    let uploads: Vec<(&str, CrossSigningKey)> = [
        (MASTER, validate(&body.master_key, MASTER)?),
        (
            SELF_SIGNING,
            validate(&body.self_signing_key, SELF_SIGNING)?,
        ),
        (
            USER_SIGNING,
            validate(&body.user_signing_key, USER_SIGNING)?,
        ),
    ]
    .into_iter()
    .filter_map(|(t, k)| k.map(|k| (t, k)))
    .collect();
    if uploads.is_empty() {
        return Ok(());
    }

    let mut conn = state.store.read().await?;
    let stored_master = stored_key(&mut conn, user_id, MASTER).await?;
    let master = uploads
        .iter()
        .find(|(t, _)| *t == MASTER)
        .map(|(_, k)| k.clone())
        .or_else(|| stored_master.clone());
    for (key_type, key) in uploads.iter().filter(|(t, _)| *t != MASTER) {
        let master = master
            .as_ref()
            .ok_or_else(|| ApiError::invalid_param("upload a master key first"))?;
        verify_signature(&key.value, user_id, &master.key_id(), &master.verifying).map_err(
            |e| {
                ApiError::new(
                    ErrCode::InvalidSignature,
                    format!("the {key_type} key is not signed by the master key: {e}"),
                )
            },
        )?;
    }
    let mut identical = true;
    for (key_type, key) in &uploads {
        let stored = keys::get_cross_signing_key(&mut conn, user_id, key_type).await?;
        identical &= stored.as_ref() == Some(&key.value);
    }
    if identical {
        return Ok(());
    }
    // Decided on the raw row, so that a key that no longer parses still
    // counts as set up and cannot be replaced without auth.
    let first_setup = keys::get_cross_signing_key(&mut conn, user_id, MASTER)
        .await?
        .is_none();
    drop(conn);
    if !first_setup {
        confirm_replacement(state, auth, body.auth.as_ref()).await?;
    }

    let mut tx = state.store.write().await?;
    if first_setup
        && keys::get_cross_signing_key(tx.conn(), user_id, MASTER)
            .await?
            .is_some()
    {
        // Another request set keys up meanwhile; replacing them needs auth.
        return Err(ApiError::new(
            ErrCode::Unknown,
            "cross-signing keys were set up concurrently; retry",
        )
        .with_status(StatusCode::CONFLICT));
    }
    for (key_type, key) in &uploads {
        keys::put_cross_signing_key(&mut tx, user_id, key_type, &key.value).await?;
    }
    keys::record_device_list_change(&mut tx, user_id).await?;
    let interested = rooms::users_sharing_rooms(tx.conn(), user_id).await?;
    tx.commit().await?;
    state.notifier.notify(interested.iter().map(String::as_str));
    Ok(())
}

/// Why one signed object of a signature upload was refused.
type Failure = (ErrCode, String);

fn failure(errcode: ErrCode, msg: impl Into<String>) -> Failure {
    (errcode, msg.into())
}

/// True when `object` is the stored key apart from signatures and `unsigned`.
fn matches_stored(stored: &Value, object: &Value) -> bool {
    matches!((signable_bytes(stored), signable_bytes(object)), (Ok(a), Ok(b)) if a == b)
}

/// The signature `signer_user`/`signer_key` carries on `object`, after
/// checking it against `key`.
fn checked_signature(
    object: &Value,
    target_key: &str,
    signer_user: &str,
    signer_key: &str,
    key: &VerifyingKey,
) -> Result<KeySignature, Failure> {
    verify_signature(object, signer_user, signer_key, key)
        .map_err(|e| failure(ErrCode::InvalidSignature, format!("{signer_key}: {e}")))?;
    let signature = object["signatures"][signer_user][signer_key]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok(KeySignature {
        target_key: target_key.to_owned(),
        signer_user: signer_user.to_owned(),
        signer_key: signer_key.to_owned(),
        signature,
    })
}

/// Checks one signed object of `POST /keys/signatures/upload` and returns
/// the new signatures it carries.
async fn check_signed_object(
    c: &mut AnyConnection,
    me: &str,
    target_user: &str,
    target_key: &str,
    object: &Value,
) -> ApiResult<Result<Vec<KeySignature>, Failure>> {
    if !object.is_object() {
        return Ok(Err(failure(ErrCode::InvalidParam, "not a JSON object")));
    }
    if target_user == me {
        if let Some(stored) = keys::get_device_keys(c, me, target_key).await? {
            // One's own device, signed by one's self-signing key.
            let Some(ssk) = stored_key(c, me, SELF_SIGNING).await? else {
                return Ok(Err(failure(
                    ErrCode::NotFound,
                    "you have no self-signing key",
                )));
            };
            if !matches_stored(&stored, object) {
                return Ok(Err(failure(
                    ErrCode::InvalidParam,
                    "does not match the stored device keys",
                )));
            }
            return Ok(
                checked_signature(object, target_key, me, &ssk.key_id(), &ssk.verifying)
                    .map(|s| vec![s]),
            );
        }
        let master = stored_key(c, me, MASTER).await?;
        let Some(master) = master.filter(|m| m.public_key == target_key) else {
            return Ok(Err(failure(ErrCode::NotFound, "unknown device or key")));
        };
        // One's own master key, signed by one's devices.
        if !matches_stored(&master.value, object) {
            return Ok(Err(failure(
                ErrCode::InvalidParam,
                "does not match the stored master key",
            )));
        }
        let by_me = object["signatures"][me]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut found = Vec::new();
        for (signer_key, signature) in &by_me {
            let already = master.value["signatures"][me].get(signer_key) == Some(signature);
            if already || *signer_key == master.key_id() {
                continue;
            }
            let device = signer_key.strip_prefix("ed25519:").unwrap_or_default();
            let device_key = match keys::get_device_keys(c, me, device).await? {
                Some(keys) => device_ed25519(&keys, device),
                None => None,
            };
            let Some(device_key) = device_key else {
                return Ok(Err(failure(
                    ErrCode::NotFound,
                    format!("{signer_key} is not a key of one of your devices"),
                )));
            };
            match checked_signature(object, target_key, me, signer_key, &device_key) {
                Ok(sig) => found.push(sig),
                Err(f) => return Ok(Err(f)),
            }
        }
        if found.is_empty() {
            return Ok(Err(failure(
                ErrCode::InvalidSignature,
                "no new signature by one of your devices",
            )));
        }
        return Ok(Ok(found));
    }
    // Another user's master key, signed by one's user-signing key.
    let master = stored_key(c, target_user, MASTER).await?;
    let Some(master) = master.filter(|m| m.public_key == target_key) else {
        return Ok(Err(failure(ErrCode::NotFound, "unknown master key")));
    };
    let Some(usk) = stored_key(c, me, USER_SIGNING).await? else {
        return Ok(Err(failure(
            ErrCode::NotFound,
            "you have no user-signing key",
        )));
    };
    if !matches_stored(&master.value, object) {
        return Ok(Err(failure(
            ErrCode::InvalidParam,
            "does not match the stored master key",
        )));
    }
    Ok(checked_signature(object, target_key, me, &usk.key_id(), &usk.verifying).map(|s| vec![s]))
}

/// `POST /keys/signatures/upload`: stores every valid signature and answers
/// with the failures, keyed by user then key id.
pub async fn upload_signatures(
    state: &Context,
    auth: &Auth,
    body: &Map<String, Value>,
) -> ApiResult<SignaturesUploadResponse> {
    let me = auth.user_id.as_str();
    let mut total = 0;
    for objects in body.values() {
        let Value::Object(objects) = objects else {
            return Err(ApiError::bad_json(
                "each user must map key ids to signed objects",
            ));
        };
        total += objects.len();
    }
    if total > MAX_SIGNED_OBJECTS {
        return Err(ApiError::invalid_param(format!(
            "at most {MAX_SIGNED_OBJECTS} signed objects per request"
        )));
    }
    let mut conn = state.store.read().await?;
    let mut accepted: Vec<(String, KeySignature)> = Vec::new();
    let mut failures: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for (target_user, objects) in body {
        let objects = objects.as_object().expect("checked above");
        for (target_key, object) in objects {
            let outcome = if state.is_local_user(target_user) {
                check_signed_object(&mut conn, me, target_user, target_key, object).await?
            } else {
                Err(failure(ErrCode::NotFound, "unknown user"))
            };
            match outcome {
                Ok(sigs) => accepted.extend(sigs.into_iter().map(|s| (target_user.clone(), s))),
                Err((errcode, error)) => {
                    failures.entry(target_user.clone()).or_default().insert(
                        target_key.clone(),
                        json!({ "errcode": errcode, "error": error }),
                    );
                }
            }
        }
    }
    drop(conn);
    if !accepted.is_empty() {
        let mut tx = state.store.write().await?;
        let mut targets = BTreeSet::new();
        for (target_user, sig) in &accepted {
            keys::put_signature(&mut tx, target_user, sig).await?;
            targets.insert(target_user.as_str());
        }
        let mut interested = BTreeSet::new();
        interested.insert(me.to_owned());
        for target in &targets {
            keys::record_device_list_change(&mut tx, target).await?;
            interested.extend(rooms::users_sharing_rooms(tx.conn(), target).await?);
        }
        tx.commit().await?;
        state.notifier.notify(interested.iter().map(String::as_str));
    }
    Ok(SignaturesUploadResponse { failures })
}

/// Replacing cross-signing keys is confirmed with a password (or at the
/// provider); an app signed in through the OAuth API may instead have the
/// person approve it on the account page (`m.oauth`): it then retries
/// until the approval is there.
async fn confirm_replacement(
    state: &Context,
    auth: &Auth,
    body_auth: Option<&Value>,
) -> ApiResult<()> {
    let user_id = auth.user_id.as_str();
    if !oauth::account::is_oauth_device(state, user_id, &auth.device_id).await? {
        return uia::check(state, &[&[uia::PASSWORD]], body_auth, Some(user_id)).await;
    }
    if oauth::account::take_reset_approval(state, user_id).await? {
        return Ok(());
    }
    let params = json!({ uia::OAUTH: { "url": oauth::account::reset_url(state) } });
    uia::check_with_params(
        state,
        &[&[uia::OAUTH], &[uia::PASSWORD]],
        params,
        body_auth,
        Some(user_id),
    )
    .await
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::Engine;
    use ed25519_dalek::{Signer, SigningKey};

    pub(crate) fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
    }

    pub(crate) fn signing_key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    /// Signs `value` as `signer`/`key_id`, keeping existing signatures.
    pub(crate) fn sign(value: &mut Value, signer: &str, key_id: &str, key: &SigningKey) {
        let sig = key.sign(signable_bytes(value).unwrap().as_bytes());
        let sigs = value
            .as_object_mut()
            .unwrap()
            .entry("signatures")
            .or_insert_with(|| json!({}));
        let by_user = sigs
            .as_object_mut()
            .unwrap()
            .entry(signer)
            .or_insert_with(|| json!({}));
        by_user[key_id] = json!(b64(&sig.to_bytes()));
    }

    fn cs_key(user: &str, usage: &str, key: &SigningKey) -> Value {
        let public = b64(key.verifying_key().as_bytes());
        json!({
            "user_id": user,
            "usage": [usage],
            "keys": { format!("ed25519:{public}"): public },
        })
    }

    #[test]
    fn cross_signing_keys_are_validated() {
        let master = signing_key(10);
        let v = cs_key("@a:x", MASTER, &master);
        let k = validate_cross_signing_key(&v, "@a:x", MASTER).unwrap();
        assert_eq!(k.verifying, master.verifying_key());
        assert_eq!(k.key_id(), format!("ed25519:{}", k.public_key));

        assert!(validate_cross_signing_key(&v, "@b:x", MASTER).is_err());
        assert!(validate_cross_signing_key(&v, "@a:x", SELF_SIGNING).is_err());
        let mut two = v.clone();
        two["keys"]["ed25519:other"] = json!("other");
        assert!(validate_cross_signing_key(&two, "@a:x", MASTER).is_err());
        let mut renamed = json!({ "user_id": "@a:x", "usage": ["master"] });
        renamed["keys"] = json!({ "ed25519:abc": b64(master.verifying_key().as_bytes()) });
        assert!(validate_cross_signing_key(&renamed, "@a:x", MASTER).is_err());
        let mut not_a_key = v.clone();
        not_a_key["keys"] = json!({ "ed25519:AAAA": "AAAA" });
        assert!(validate_cross_signing_key(&not_a_key, "@a:x", MASTER).is_err());
    }

    #[test]
    fn signatures_are_checked_against_the_signer() {
        let master = signing_key(10);
        let ssk = signing_key(11);
        let master_key =
            validate_cross_signing_key(&cs_key("@a:x", MASTER, &master), "@a:x", MASTER).unwrap();
        let mut ssk_value = cs_key("@a:x", SELF_SIGNING, &ssk);
        sign(&mut ssk_value, "@a:x", &master_key.key_id(), &master);
        let sig = checked_signature(
            &ssk_value,
            "T",
            "@a:x",
            &master_key.key_id(),
            &master_key.verifying,
        )
        .unwrap();
        assert_eq!(sig.signer_key, master_key.key_id());
        assert!(!sig.signature.is_empty());

        let wrong = signing_key(12).verifying_key();
        let (errcode, _) =
            checked_signature(&ssk_value, "T", "@a:x", &master_key.key_id(), &wrong).unwrap_err();
        assert_eq!(errcode, "M_INVALID_SIGNATURE");
    }

    #[test]
    fn stored_comparison_ignores_signatures_and_unsigned() {
        let stored = json!({ "keys": { "a": "b" }, "signatures": { "@a:x": { "k": "s" } } });
        let upload = json!({ "keys": { "a": "b" }, "signatures": { "@a:x": { "k2": "s2" } }, "unsigned": { "x": 1 } });
        assert!(matches_stored(&stored, &upload));
        let other = json!({ "keys": { "a": "c" } });
        assert!(!matches_stored(&stored, &other));
    }
}
