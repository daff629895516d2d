//! This device's cross-signing private keys (spec: "Cross-signing"):
//! bootstrapping an identity, and the signatures it makes — on the master
//! key by this device, on own devices by the self-signing key, on other
//! users' master keys by the user-signing key once they are verified.
//!
//! Reading identities and computing trust is [`super::identities`]; this
//! module only makes signatures and the requests that publish them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use vodozemac::{Ed25519PublicKey, Ed25519SecretKey};
use zeroize::Zeroizing;

use super::canonical_json::{add_signature, signable_bytes};
use super::devices::Device;
use super::error::CryptoError;
use super::identities::key_id;
use super::machine::OlmMachine;
use super::requests::{PendingKind, RequestBody, SignaturesUploadRequest};
use cloister_proto::canonical::decode_b64;

pub use cloister_proto::keys::SigningKeysUploadRequest;

/// The private halves of the local user's cross-signing keys, as far as
/// this device holds them. A device that bootstrapped holds all three; one
/// verified later may hold none (and only gains them from secret storage).
pub(crate) struct PrivateIdentity {
    pub master: Option<Ed25519SecretKey>,
    pub self_signing: Option<Ed25519SecretKey>,
    pub user_signing: Option<Ed25519SecretKey>,
}

/// The identity this device uses, and a new one on its way to the server:
/// a replacement the server has not accepted (it wants the password, say)
/// must not cost the identity in use.
#[derive(Default)]
pub(crate) struct CrossSigningKeys {
    /// Accepted by the server: the keys signatures are made with.
    pub published: Option<PrivateIdentity>,
    /// Made by a bootstrap, not yet accepted.
    pub pending: Option<PrivateIdentity>,
}

/// How [`CrossSigningKeys`] is persisted.
#[derive(Serialize, Deserialize)]
pub(crate) struct CrossSigningRecord {
    published: Option<PrivateIdentityRecord>,
    pending: Option<PrivateIdentityRecord>,
}

impl CrossSigningKeys {
    pub(crate) fn is_empty(&self) -> bool {
        self.published.is_none() && self.pending.is_none()
    }

    pub(crate) fn to_record(&self) -> CrossSigningRecord {
        CrossSigningRecord {
            published: self.published.as_ref().map(PrivateIdentity::to_record),
            pending: self.pending.as_ref().map(PrivateIdentity::to_record),
        }
    }

    pub(crate) fn from_record(record: &CrossSigningRecord) -> Result<Self, CryptoError> {
        let load = |r: &Option<PrivateIdentityRecord>| {
            r.as_ref().map(PrivateIdentity::from_record).transpose()
        };
        Ok(Self {
            published: load(&record.published)?,
            pending: load(&record.pending)?,
        })
    }

    /// A published key, for signing.
    fn key(
        &self,
        pick: impl Fn(&PrivateIdentity) -> Option<&Ed25519SecretKey>,
        what: &str,
    ) -> Result<&Ed25519SecretKey, CryptoError> {
        self.published.as_ref().and_then(pick).ok_or_else(|| {
            CryptoError::CrossSigning(format!("this device does not hold the {what} key"))
        })
    }
}

/// How [`PrivateIdentity`] is persisted (inside an encrypted store record):
/// the 32-byte seeds in unpadded base64.
#[derive(Serialize, Deserialize)]
pub(crate) struct PrivateIdentityRecord {
    master: Option<String>,
    self_signing: Option<String>,
    user_signing: Option<String>,
}

impl Drop for PrivateIdentityRecord {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for seed in [
            &mut self.master,
            &mut self.self_signing,
            &mut self.user_signing,
        ]
        .into_iter()
        .flatten()
        {
            seed.zeroize();
        }
    }
}

impl PrivateIdentity {
    fn generate() -> Self {
        Self {
            master: Some(Ed25519SecretKey::new()),
            self_signing: Some(Ed25519SecretKey::new()),
            user_signing: Some(Ed25519SecretKey::new()),
        }
    }

    pub(crate) fn to_record(&self) -> PrivateIdentityRecord {
        let seed = |k: &Option<Ed25519SecretKey>| k.as_ref().map(Ed25519SecretKey::to_base64);
        PrivateIdentityRecord {
            master: seed(&self.master),
            self_signing: seed(&self.self_signing),
            user_signing: seed(&self.user_signing),
        }
    }

    pub(crate) fn from_record(record: &PrivateIdentityRecord) -> Result<Self, CryptoError> {
        let key = |seed: &Option<String>| {
            seed.as_deref()
                .map(|s| {
                    Ed25519SecretKey::from_base64(s)
                        .map_err(|e| super::persist::corrupt("cross-signing keys", e))
                })
                .transpose()
        };
        Ok(Self {
            master: key(&record.master)?,
            self_signing: key(&record.self_signing)?,
            user_signing: key(&record.user_signing)?,
        })
    }

    /// The public master key: who the local user is.
    pub(crate) fn master_public(&self) -> Option<Ed25519PublicKey> {
        self.master.as_ref().map(Ed25519SecretKey::public_key)
    }
}

/// Secret storage names of the cross-signing private keys.
pub const SECRET_MASTER: &str = "m.cross_signing.master";
/// The self-signing key's secret name.
pub const SECRET_SELF_SIGNING: &str = "m.cross_signing.self_signing";
/// The user-signing key's secret name.
pub const SECRET_USER_SIGNING: &str = "m.cross_signing.user_signing";

/// A cross-signing key object as the spec shapes it, without signatures.
/// Identities are read back from exactly these fields, so rebuilding the
/// object gives the bytes its signatures cover.
pub(crate) fn key_object(user_id: &str, usage: &str, key: &Ed25519PublicKey) -> Value {
    let public = key.to_base64();
    json!({
        "user_id": user_id,
        "usage": [usage],
        "keys": { format!("ed25519:{public}"): public },
    })
}

/// A device-keys object rebuilt from a checked [`Device`]: the fields that
/// the spec defines and that clients publish. A device whose published
/// object carried other fields gets a signature the server refuses, which
/// is reported; it is never silently trusted.
pub(crate) fn device_object(device: &Device) -> Value {
    json!({
        "user_id": device.user_id,
        "device_id": device.device_id,
        "algorithms": device.algorithms,
        "keys": {
            format!("curve25519:{}", device.device_id): device.curve25519.to_base64(),
            format!("ed25519:{}", device.device_id): device.ed25519.to_base64(),
        },
    })
}

/// Sign `object` as `user_id` with `key`, under the key's own id.
fn sign_with(object: &mut Value, user_id: &str, key: &Ed25519SecretKey) -> Result<(), CryptoError> {
    let map = object.as_object_mut().expect("key objects are objects");
    let signature = key.sign(signable_bytes(map)?.as_bytes());
    add_signature(map, user_id, &key_id(&key.public_key()), &signature);
    Ok(())
}

impl OlmMachine {
    /// Create this user's cross-signing identity (master, self-signing and
    /// user-signing keys) and return the
    /// `POST /_matrix/client/v3/keys/device_signing/upload` body that
    /// publishes it. The server may ask for user-interactive auth (always
    /// when an identity exists already); send it with the `auth` the server
    /// asked for, then call
    /// [`mark_cross_signing_uploaded`](Self::mark_cross_signing_uploaded).
    ///
    /// Until then, calling this again returns the same keys, so an upload
    /// cut short is retried without a second identity. `reset` replaces an
    /// identity this device already published.
    pub fn bootstrap_cross_signing(
        &mut self,
        reset: bool,
    ) -> Result<SigningKeysUploadRequest, CryptoError> {
        if self.cross_signing.published.is_some() && !reset {
            return Err(CryptoError::CrossSigning(
                "this device already published a cross-signing identity; reset replaces it".into(),
            ));
        }
        let resumable = self.cross_signing.pending.as_ref().is_some_and(|p| {
            p.master.is_some() && p.self_signing.is_some() && p.user_signing.is_some()
        });
        if !resumable {
            if !reset && self.devices.identity(&self.user_id).is_some() {
                return Err(CryptoError::CrossSigning(
                    "the account has a cross-signing identity already (made by another device): verify this device from that one, or reset".into(),
                ));
            }
            self.cross_signing.pending = Some(PrivateIdentity::generate());
        }
        let keys = self.cross_signing.pending.as_ref().expect("set above");
        let (Some(master), Some(ssk), Some(usk)) =
            (&keys.master, &keys.self_signing, &keys.user_signing)
        else {
            unreachable!("generated or resumed with all three keys");
        };
        let user = self.user_id.as_str();
        let master_key = key_object(user, "master", &master.public_key());
        let mut self_signing_key = key_object(user, "self_signing", &ssk.public_key());
        sign_with(&mut self_signing_key, user, master)?;
        let mut user_signing_key = key_object(user, "user_signing", &usk.public_key());
        sign_with(&mut user_signing_key, user, master)?;
        Ok(SigningKeysUploadRequest {
            auth: None,
            master_key: Some(master_key),
            self_signing_key: Some(self_signing_key),
            user_signing_key: Some(user_signing_key),
        })
    }

    /// The server accepted the keys from
    /// [`bootstrap_cross_signing`](Self::bootstrap_cross_signing): queue
    /// the signatures that make this device trusted (its master key signed
    /// by this device, this device signed by the self-signing key).
    pub fn mark_cross_signing_uploaded(&mut self) -> Result<(), CryptoError> {
        let pending = self
            .cross_signing
            .pending
            .take()
            .ok_or_else(|| CryptoError::CrossSigning("nothing was bootstrapped".into()))?;
        self.cross_signing.published = Some(pending);
        let own = self.user_id.clone();
        // Our identity is re-read from the server, now with its signatures.
        self.devices.mark_changed([own.as_str()]);
        self.sign_own_identity()?;
        let device = self.device_id.clone();
        self.sign_own_device(&device)
    }

    /// Whether this device holds the private cross-signing keys, and the
    /// server has them.
    pub fn has_cross_signing_keys(&self) -> bool {
        self.cross_signing
            .published
            .as_ref()
            .is_some_and(|p| p.self_signing.is_some())
    }

    /// Sign our master key (as the server holds it) with this device's key:
    /// this device vouches for the identity, and others' devices see this
    /// device as belonging to it. Used after bootstrap and after this device
    /// verified another own device that showed our master key.
    pub(crate) fn sign_own_identity(&mut self) -> Result<(), CryptoError> {
        let master = self
            .own_master_key()
            .ok_or_else(|| CryptoError::CrossSigning("no cross-signing identity known".into()))?;
        let mut object = key_object(&self.user_id, "master", &master);
        let map = object.as_object_mut().expect("an object");
        let signature = self.account.sign(&signable_bytes(map)?);
        add_signature(
            map,
            &self.user_id,
            &format!("ed25519:{}", self.device_id),
            &signature,
        );
        self.queue_signatures(self.user_id.clone(), master.to_base64(), object);
        Ok(())
    }

    /// Sign one of our own devices with the self-signing key (after it was
    /// verified), so that everyone who trusts our identity trusts it.
    pub fn sign_own_device(&mut self, device_id: &str) -> Result<(), CryptoError> {
        let ssk = self
            .cross_signing
            .key(|p| p.self_signing.as_ref(), "self-signing")?;
        let mut object = if device_id == self.device_id {
            // This device is not among the queried ones: its own keys.
            let mut keys = self.account.device_keys()?;
            if let Some(map) = keys.as_object_mut() {
                map.remove("signatures");
                map.remove("unsigned");
            }
            keys
        } else {
            let device = self.devices.get(&self.user_id, device_id).ok_or_else(|| {
                CryptoError::CrossSigning(format!("unknown own device {device_id}"))
            })?;
            device_object(device)
        };
        sign_with(&mut object, &self.user_id, ssk)?;
        self.queue_signatures(self.user_id.clone(), device_id.to_owned(), object);
        Ok(())
    }

    /// Sign `user_id`'s master key with our user-signing key (after they
    /// were verified): their identity, and every device it signs, becomes
    /// verified for all our devices.
    pub fn sign_user(&mut self, user_id: &str) -> Result<(), CryptoError> {
        let usk = self
            .cross_signing
            .key(|p| p.user_signing.as_ref(), "user-signing")?;
        let identity = self.devices.identity(user_id).ok_or_else(|| {
            CryptoError::CrossSigning(format!("{user_id} has no cross-signing identity"))
        })?;
        let mut object = key_object(user_id, "master", &identity.master);
        sign_with(&mut object, &self.user_id, usk)?;
        let target = identity.master.to_base64();
        self.queue_signatures(user_id.to_owned(), target, object);
        Ok(())
    }

    /// Queue a `/keys/signatures/upload` of one signed object; the user it
    /// concerns is queried again once the server took it.
    fn queue_signatures(&mut self, user_id: String, key: String, object: Value) {
        let mut objects = BTreeMap::new();
        objects.insert(key, object);
        let mut signed = BTreeMap::new();
        signed.insert(user_id.clone(), objects);
        self.requests.push(
            RequestBody::SignaturesUpload(SignaturesUploadRequest(signed)),
            PendingKind::Signatures { user_id },
        );
    }

    /// A signatures upload came back: what the server refused is an error
    /// (retrying would not change its mind); the user is queried again.
    pub(crate) fn receive_signatures_response(
        &mut self,
        user_id: &str,
        response: &Value,
    ) -> Result<(), CryptoError> {
        self.devices.mark_changed([user_id]);
        let failures = response
            .get("failures")
            .and_then(Value::as_object)
            .filter(|f| !f.is_empty());
        match failures {
            None => Ok(()),
            Some(failures) => Err(CryptoError::CrossSigning(format!(
                "the server refused signatures: {}",
                describe_failures(failures)
            ))),
        }
    }

    /// The private keys this device holds, as secret storage names them
    /// (`m.cross_signing.master` …) with their seeds in unpadded base64.
    pub fn cross_signing_secrets(&self) -> Vec<(&'static str, Zeroizing<String>)> {
        let Some(keys) = &self.cross_signing.published else {
            return Vec::new();
        };
        [
            (SECRET_MASTER, &keys.master),
            (SECRET_SELF_SIGNING, &keys.self_signing),
            (SECRET_USER_SIGNING, &keys.user_signing),
        ]
        .into_iter()
        .filter_map(|(name, key)| Some((name, Zeroizing::new(key.as_ref()?.to_base64()))))
        .collect()
    }

    /// Take the private keys from secret storage (seeds in base64, padded
    /// or not). Each must match the public key the server lists for our
    /// identity, or nothing is taken. This device then vouches for the
    /// identity and signs itself, so a device restored with the recovery
    /// key is trusted without an emoji comparison.
    pub fn import_cross_signing_secrets(
        &mut self,
        master: Option<&str>,
        self_signing: Option<&str>,
        user_signing: Option<&str>,
    ) -> Result<(), CryptoError> {
        let identity = self
            .devices
            .identity(&self.user_id)
            .cloned()
            .ok_or_else(|| {
                CryptoError::CrossSigning(
                    "our cross-signing identity is not known yet (sync first)".into(),
                )
            })?;
        let parse = |seed: Option<&str>, public: Option<Ed25519PublicKey>, what: &str| {
            let Some(seed) = seed else {
                return Ok(None);
            };
            let invalid = || CryptoError::CrossSigning(format!("the stored {what} key is invalid"));
            let bytes = Zeroizing::new(decode_b64(seed.trim()).ok_or_else(invalid)?);
            let seed: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| invalid())?;
            let key = Ed25519SecretKey::from_slice(seed);
            if Some(key.public_key()) != public {
                return Err(CryptoError::CrossSigning(format!(
                    "the stored {what} key does not match the account's identity"
                )));
            }
            Ok(Some(key))
        };
        let keys = PrivateIdentity {
            master: parse(master, Some(identity.master), "master")?,
            self_signing: parse(self_signing, Some(identity.self_signing), "self-signing")?,
            user_signing: parse(user_signing, identity.user_signing, "user-signing")?,
        };
        if keys.master.is_none() && keys.self_signing.is_none() && keys.user_signing.is_none() {
            return Err(CryptoError::CrossSigning(
                "no cross-signing key was given".into(),
            ));
        }
        let can_sign_self = keys.self_signing.is_some();
        self.cross_signing.published = Some(keys);
        self.sign_own_identity()?;
        if can_sign_self {
            let device = self.device_id.clone();
            self.sign_own_device(&device)?;
        }
        Ok(())
    }

    /// Our master key: the published one this device made, else the one
    /// the server lists for us.
    pub(crate) fn own_master_key(&self) -> Option<Ed25519PublicKey> {
        self.cross_signing
            .published
            .as_ref()
            .and_then(PrivateIdentity::master_public)
            .or_else(|| self.devices.identity(&self.user_id).map(|i| i.master))
    }

    pub(crate) fn private_identity_record(
        &self,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, CryptoError> {
        if self.cross_signing.is_empty() {
            return Ok(None);
        }
        super::persist::to_vec_secret(&self.cross_signing.to_record()).map(Some)
    }
}

/// `user: key: errcode` for each refused object; errors hold no secrets.
fn describe_failures(failures: &Map<String, Value>) -> String {
    let mut parts = Vec::new();
    for (user, keys) in failures {
        for (key, error) in keys.as_object().into_iter().flatten() {
            let code = error.get("errcode").and_then(Value::as_str).unwrap_or("?");
            parts.push(format!("{user} {key}: {code}"));
        }
    }
    parts.join(", ")
}
