//! Cross-signing identities read from `/keys/query` (spec: "Cross-signing"),
//! and the trust of a device that follows from them.
//!
//! A user's identity is their master key; it signs their self-signing key,
//! which signs each of their devices, and (for the local user only) their
//! user-signing key, which signs other people's master keys once the local
//! user verified them. So a device of someone else is verified when the
//! local user's user-signing key signed that person's master key and their
//! self-signing key signed the device. The local user's own identity counts
//! as verified when this device signed its master key (what a client does
//! when it bootstraps cross-signing or is verified by another own device).
//!
//! Only signatures that verify are kept; keys that do not chain to the
//! master are refused with the whole identity, as a server could otherwise
//! slip in a self-signing key of its own.

use serde_json::{Map, Value};
use vodozemac::Ed25519PublicKey;

use super::canonical_json::verify_signature;
use super::error::CryptoError;
use super::requests::KeysQueryResponse;

/// A user's cross-signing public keys, each checked against the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdentity {
    /// Whose identity.
    pub user_id: String,
    /// The identity itself: a different master key is a different identity.
    pub master: Ed25519PublicKey,
    /// Signs the user's devices; signed by the master key.
    pub self_signing: Ed25519PublicKey,
    /// Only known for the local user.
    pub user_signing: Option<Ed25519PublicKey>,
    /// Keys of the local user that validly signed this master key: its
    /// user-signing keys (base64), or for the local user's own identity the
    /// marker [`OWN_DEVICE`] when this device signed it.
    pub(crate) master_signed_by: Vec<String>,
}

/// Stands for "this device's key" in [`UserIdentity::master_signed_by`].
pub(crate) const OWN_DEVICE: &str = "device";

/// How far a device can be trusted, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum DeviceTrust {
    /// Verified: marked so locally, or signed by its owner's self-signing
    /// key where the owner's identity is verified.
    Verified,
    /// Signed by its owner's self-signing key; the owner's identity is not
    /// verified yet.
    CrossSigned,
    /// Its owner has a cross-signing identity that did not sign this device:
    /// a device the owner has not approved, or one a server added.
    NotSignedByOwner,
    /// Its owner has no cross-signing identity: nothing to go by.
    Unverified,
    /// Blocked locally: gets no room keys.
    Blocked,
}

/// The one Ed25519 key of a cross-signing key object, after checking that
/// it belongs to `user_id` and has `usage`. Its key id is
/// `ed25519:<the key in unpadded base64>`.
fn cross_signing_key<'a>(
    json: &'a Value,
    user_id: &str,
    usage: &str,
) -> Result<(Ed25519PublicKey, &'a Map<String, Value>), CryptoError> {
    let malformed = |reason: String| CryptoError::Malformed {
        what: "cross-signing key",
        reason,
    };
    let object = json
        .as_object()
        .ok_or_else(|| malformed("not an object".into()))?;
    if object.get("user_id").and_then(Value::as_str) != Some(user_id) {
        return Err(malformed(format!("the {usage} key is not {user_id}'s")));
    }
    let usages = object.get("usage").and_then(Value::as_array);
    if !usages.is_some_and(|u| u.iter().any(|x| x == usage)) {
        return Err(malformed(format!("no usage {usage:?}")));
    }
    let keys = object
        .get("keys")
        .and_then(Value::as_object)
        .filter(|k| k.len() == 1)
        .ok_or_else(|| malformed(format!("the {usage} key must hold exactly one key")))?;
    let (id, key) = keys.iter().next().expect("one key");
    let key = key
        .as_str()
        .filter(|k| id.strip_prefix("ed25519:") == Some(*k))
        .ok_or_else(|| malformed(format!("the {usage} key id must be ed25519:<key>")))?;
    let key = Ed25519PublicKey::from_base64(key)
        .map_err(|_| malformed(format!("invalid {usage} key")))?;
    Ok((key, object))
}

/// `ed25519:<key>`, the id of a cross-signing key.
pub(crate) fn key_id(key: &Ed25519PublicKey) -> String {
    format!("ed25519:{}", key.to_base64())
}

/// Who the local user is, for reading signatures by them.
pub(crate) struct Local<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub device_key: &'a Ed25519PublicKey,
}

/// `user_id`'s identity from a `/keys/query` response: None when the
/// response has no master key for them.
pub(crate) fn from_query(
    response: &KeysQueryResponse,
    user_id: &str,
    local: &Local<'_>,
) -> Result<Option<UserIdentity>, CryptoError> {
    let Some(master_json) = response.master_keys.get(user_id) else {
        return Ok(None);
    };
    let (master, master_object) = cross_signing_key(master_json, user_id, "master")?;
    let signed_by_master = |json: &Value, usage: &str| {
        let (key, object) = cross_signing_key(json, user_id, usage)?;
        verify_signature(
            object,
            user_id,
            &key_id(&master),
            &master,
            "cross-signing key",
        )?;
        Ok::<_, CryptoError>(key)
    };
    let self_signing = response
        .self_signing_keys
        .get(user_id)
        .ok_or_else(|| CryptoError::Malformed {
            what: "cross-signing key",
            reason: format!("{user_id} has a master key but no self-signing key"),
        })
        .and_then(|json| signed_by_master(json, "self_signing"))?;
    let user_signing = match response.user_signing_keys.get(user_id) {
        Some(json) if user_id == local.user_id => Some(signed_by_master(json, "user_signing")?),
        _ => None,
    };
    let mut master_signed_by = Vec::new();
    let by_local = master_object
        .get("signatures")
        .and_then(|s| s.get(local.user_id))
        .and_then(Value::as_object);
    for id in by_local.into_iter().flat_map(|s| s.keys()) {
        let Some(name) = id.strip_prefix("ed25519:") else {
            continue;
        };
        let (key, marker) = if user_id == local.user_id && name == local.device_id {
            (*local.device_key, OWN_DEVICE.to_owned())
        } else {
            match Ed25519PublicKey::from_base64(name) {
                Ok(key) => (key, name.to_owned()),
                Err(_) => continue,
            }
        };
        if verify_signature(master_object, local.user_id, id, &key, "master key").is_ok() {
            master_signed_by.push(marker);
        }
    }
    Ok(Some(UserIdentity {
        user_id: user_id.to_owned(),
        master,
        self_signing,
        user_signing,
        master_signed_by,
    }))
}

/// Whether `device_keys` (a device-keys object of `identity`'s user)
/// carries a valid signature by their self-signing key.
pub(crate) fn signs_device(identity: &UserIdentity, device_keys: &Value) -> bool {
    device_keys.as_object().is_some_and(|object| {
        verify_signature(
            object,
            &identity.user_id,
            &key_id(&identity.self_signing),
            &identity.self_signing,
            "device keys",
        )
        .is_ok()
    })
}

impl UserIdentity {
    /// Whether the local user verified this identity: for their own, this
    /// device signed its master key; for anyone else's, the local user's
    /// (own, verified) user-signing key did.
    pub fn is_verified(&self, own: Option<&UserIdentity>) -> bool {
        let Some(own) = own.filter(|o| o.master_signed_by.iter().any(|s| s == OWN_DEVICE)) else {
            return false;
        };
        if own.user_id == self.user_id {
            return own.master == self.master;
        }
        own.user_signing
            .is_some_and(|usk| self.master_signed_by.contains(&usk.to_base64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::canonical_json::{add_signature, signable_bytes};
    use serde_json::json;
    use vodozemac::Ed25519SecretKey;

    const ME: &str = "@me:x";
    const BOB: &str = "@bob:x";

    fn key_json(user: &str, usage: &str, key: &Ed25519SecretKey) -> Value {
        let public = key.public_key().to_base64();
        json!({ "user_id": user, "usage": [usage], "keys": { format!("ed25519:{public}"): public } })
    }

    fn sign(json: &mut Value, user: &str, key_id: &str, key: &Ed25519SecretKey) {
        let object = json.as_object_mut().unwrap();
        let signature = key.sign(signable_bytes(object).unwrap().as_bytes());
        add_signature(object, user, key_id, &signature);
    }

    fn id(key: &Ed25519SecretKey) -> String {
        format!("ed25519:{}", key.public_key().to_base64())
    }

    struct Keys {
        master: Ed25519SecretKey,
        ssk: Ed25519SecretKey,
        usk: Ed25519SecretKey,
    }

    fn keys() -> Keys {
        Keys {
            master: Ed25519SecretKey::new(),
            ssk: Ed25519SecretKey::new(),
            usk: Ed25519SecretKey::new(),
        }
    }

    /// A response with `user`'s identity made from `k`.
    fn add_identity(r: &mut KeysQueryResponse, user: &str, k: &Keys) -> Value {
        let master = key_json(user, "master", &k.master);
        let mut ssk = key_json(user, "self_signing", &k.ssk);
        sign(&mut ssk, user, &id(&k.master), &k.master);
        let mut usk = key_json(user, "user_signing", &k.usk);
        sign(&mut usk, user, &id(&k.master), &k.master);
        r.master_keys.insert(user.into(), master.clone());
        r.self_signing_keys.insert(user.into(), ssk);
        r.user_signing_keys.insert(user.into(), usk);
        master
    }

    #[test]
    fn a_verified_chain_verifies_devices_and_breaks_when_a_link_is_wrong() {
        let device = Ed25519SecretKey::new();
        let device_public = device.public_key();
        let local = Local {
            user_id: ME,
            device_id: "DEV",
            device_key: &device_public,
        };
        let (mine, bobs) = (keys(), keys());
        let mut r = KeysQueryResponse::default();
        let mut my_master = add_identity(&mut r, ME, &mine);
        sign(&mut my_master, ME, "ed25519:DEV", &device);
        r.master_keys.insert(ME.into(), my_master);
        let mut bob_master = add_identity(&mut r, BOB, &bobs);
        r.user_signing_keys.remove(BOB);

        let own = from_query(&r, ME, &local).unwrap().unwrap();
        assert!(own.user_signing.is_some());
        assert!(own.is_verified(Some(&own)));
        let bob = from_query(&r, BOB, &local).unwrap().unwrap();
        assert!(!bob.is_verified(Some(&own)), "not signed by my USK yet");
        // After verifying Bob, my user-signing key signs his master key.
        sign(&mut bob_master, ME, &id(&mine.usk), &mine.usk);
        r.master_keys.insert(BOB.into(), bob_master.clone());
        let bob = from_query(&r, BOB, &local).unwrap().unwrap();
        assert!(bob.is_verified(Some(&own)));
        assert!(!bob.is_verified(None));

        // His device, signed by his self-signing key.
        let mut device_keys = json!({ "user_id": BOB, "device_id": "B1", "keys": {} });
        assert!(!signs_device(&bob, &device_keys));
        sign(&mut device_keys, BOB, &id(&bobs.ssk), &bobs.ssk);
        assert!(signs_device(&bob, &device_keys));
        // A signature by another key under the same key id does not count.
        let mut forged = json!({ "user_id": BOB, "device_id": "B2", "keys": {} });
        sign(&mut forged, BOB, &id(&bobs.ssk), &Ed25519SecretKey::new());
        assert!(!signs_device(&bob, &forged));

        // A self-signing key the master did not sign: the identity is refused.
        let mut stranger = key_json(BOB, "self_signing", &Ed25519SecretKey::new());
        sign(
            &mut stranger,
            BOB,
            &id(&bobs.master),
            &Ed25519SecretKey::new(),
        );
        r.self_signing_keys.insert(BOB.into(), stranger);
        assert!(from_query(&r, BOB, &local).is_err());
        // Someone else's user-signing key is never taken.
        let bob_with_usk = {
            let mut r = KeysQueryResponse::default();
            add_identity(&mut r, BOB, &bobs);
            from_query(&r, BOB, &local).unwrap().unwrap()
        };
        assert_eq!(bob_with_usk.user_signing, None);
        // My own identity, not signed by this device, is not verified.
        let mut r2 = KeysQueryResponse::default();
        add_identity(&mut r2, ME, &mine);
        let unsigned = from_query(&r2, ME, &local).unwrap().unwrap();
        assert!(!unsigned.is_verified(Some(&unsigned)));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let k = Ed25519SecretKey::new();
        let public = k.public_key().to_base64();
        for bad in [
            json!({ "user_id": BOB, "usage": ["master"], "keys": { "ed25519:other": public } }),
            json!({ "user_id": ME, "usage": ["master"], "keys": { format!("ed25519:{public}"): public } }),
            json!({ "user_id": BOB, "usage": ["self_signing"], "keys": { format!("ed25519:{public}"): public } }),
            json!({ "user_id": BOB, "usage": ["master"], "keys": {} }),
            json!("not an object"),
        ] {
            assert!(cross_signing_key(&bad, BOB, "master").is_err(), "{bad}");
        }
    }
}
