//! This device's Olm account: identity keys, signed device keys, and the
//! one-time and fallback keys published for others to start sessions with.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use vodozemac::olm::{
    Account as VodozemacAccount, IdentityKeys, InboundCreationResult, PreKeyMessage, Session,
    SessionConfig,
};
use vodozemac::{Curve25519PublicKey, Ed25519Signature};

use super::canonical_json::{add_signature, signable_bytes};
use super::error::CryptoError;
use super::requests::KeysUploadRequest;
use super::{MEGOLM_V1, OLM_V1, SIGNED_CURVE25519};

/// How many one-time keys the server should hold for us. vodozemac keeps
/// many more private keys than this, so keys claimed but whose pre-key
/// message has not arrived yet are not forgotten when we top up.
pub const TARGET_ONE_TIME_KEYS: u64 = 50;

pub(crate) struct Account {
    pub(crate) user_id: String,
    pub(crate) device_id: String,
    pub(crate) inner: VodozemacAccount,
    /// Whether the server has our device keys.
    pub(crate) device_keys_uploaded: bool,
    /// The server's last reported count of our `signed_curve25519` keys.
    pub(crate) server_one_time_key_count: u64,
}

impl Account {
    pub(crate) fn new(user_id: &str, device_id: &str) -> Self {
        let mut account = Self {
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            inner: VodozemacAccount::new(),
            device_keys_uploaded: false,
            server_one_time_key_count: 0,
        };
        // A new device starts with a full set of keys, so that the first
        // upload already lets others reach it.
        account.inner.generate_fallback_key();
        account.top_up_one_time_keys();
        account
    }

    pub(crate) fn identity_keys(&self) -> IdentityKeys {
        self.inner.identity_keys()
    }

    pub(crate) fn sign(&self, message: &str) -> Ed25519Signature {
        self.inner.sign(message)
    }

    fn key_id(&self) -> String {
        format!("ed25519:{}", self.device_id)
    }

    fn sign_object(&self, object: &mut Map<String, Value>) -> Result<(), CryptoError> {
        let signature = self.sign(&signable_bytes(object)?);
        add_signature(object, &self.user_id, &self.key_id(), &signature);
        Ok(())
    }

    /// Our device keys in the Matrix format, self-signed.
    pub(crate) fn device_keys(&self) -> Result<Value, CryptoError> {
        let keys = self.identity_keys();
        let mut object = json!({
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": [OLM_V1, MEGOLM_V1],
            "keys": {
                format!("curve25519:{}", self.device_id): keys.curve25519.to_base64(),
                format!("ed25519:{}", self.device_id): keys.ed25519.to_base64(),
            },
        });
        if let Value::Object(map) = &mut object {
            self.sign_object(map)?;
        }
        Ok(object)
    }

    fn signed_key(&self, key: &Curve25519PublicKey, fallback: bool) -> Result<Value, CryptoError> {
        let mut object = Map::new();
        object.insert("key".into(), Value::String(key.to_base64()));
        if fallback {
            object.insert("fallback".into(), Value::Bool(true));
        }
        self.sign_object(&mut object)?;
        Ok(Value::Object(object))
    }

    fn top_up_one_time_keys(&mut self) {
        // Keys still waiting for upload mean an upload is already due;
        // generating more now would count the same gap twice.
        if !self.inner.one_time_keys().is_empty() {
            return;
        }
        if self.server_one_time_key_count < TARGET_ONE_TIME_KEYS {
            let missing = TARGET_ONE_TIME_KEYS - self.server_one_time_key_count;
            self.inner.generate_one_time_keys(missing as usize);
        }
    }

    /// Apply the key counts from a sync response. `unused_fallback_types`
    /// is `None` when the server omitted the field: then nothing can be
    /// concluded about the fallback key, and it is left alone.
    pub(crate) fn update_key_counts(
        &mut self,
        one_time_key_counts: &BTreeMap<String, u64>,
        unused_fallback_types: Option<&[String]>,
    ) {
        // Servers must always send the count, with 0 when empty; a missing
        // entry is read as 0 so that a buggy server still gets keys.
        self.server_one_time_key_count = one_time_key_counts
            .get(SIGNED_CURVE25519)
            .copied()
            .unwrap_or(0);
        self.top_up_one_time_keys();

        if let Some(types) = unused_fallback_types {
            let fallback_unused = types.iter().any(|t| t == SIGNED_CURVE25519);
            // An unpublished fallback key is already the replacement.
            if !fallback_unused && self.inner.fallback_key().is_empty() {
                self.inner.generate_fallback_key();
            }
        }
    }

    /// The `/keys/upload` body, if anything needs uploading.
    pub(crate) fn keys_for_upload(&self) -> Result<Option<KeysUploadRequest>, CryptoError> {
        let device_keys = if self.device_keys_uploaded {
            None
        } else {
            Some(self.device_keys()?)
        };
        let mut one_time_keys = BTreeMap::new();
        for (key_id, key) in self.inner.one_time_keys() {
            one_time_keys.insert(
                format!("{SIGNED_CURVE25519}:{}", key_id.to_base64()),
                self.signed_key(&key, false)?,
            );
        }
        let mut fallback_keys = BTreeMap::new();
        for (key_id, key) in self.inner.fallback_key() {
            fallback_keys.insert(
                format!("{SIGNED_CURVE25519}:{}", key_id.to_base64()),
                self.signed_key(&key, true)?,
            );
        }
        if device_keys.is_none() && one_time_keys.is_empty() && fallback_keys.is_empty() {
            return Ok(None);
        }
        Ok(Some(KeysUploadRequest {
            device_keys,
            one_time_keys,
            fallback_keys,
        }))
    }

    /// The server accepted an upload made from `keys_for_upload`.
    pub(crate) fn mark_uploaded(&mut self, one_time_key_counts: &BTreeMap<String, u64>) {
        self.device_keys_uploaded = true;
        self.inner.mark_keys_as_published();
        if let Some(count) = one_time_key_counts.get(SIGNED_CURVE25519) {
            self.server_one_time_key_count = *count;
        }
    }

    pub(crate) fn create_outbound_session(
        &self,
        identity_key: Curve25519PublicKey,
        one_time_key: Curve25519PublicKey,
    ) -> Result<Session, CryptoError> {
        self.inner
            .create_outbound_session(SessionConfig::version_1(), identity_key, one_time_key)
            .map_err(|e| CryptoError::OlmSessionCreation(e.to_string()))
    }

    pub(crate) fn create_inbound_session(
        &mut self,
        their_identity_key: Curve25519PublicKey,
        message: &PreKeyMessage,
    ) -> Result<InboundCreationResult, CryptoError> {
        self.inner
            .create_inbound_session(SessionConfig::version_1(), their_identity_key, message)
            .map_err(|e| CryptoError::OlmSessionCreation(e.to_string()))
    }

    #[cfg(test)]
    pub(crate) fn unpublished_one_time_key_count(&self) -> usize {
        self.inner.one_time_keys().len()
    }

    #[cfg(test)]
    pub(crate) fn has_unpublished_fallback_key(&self) -> bool {
        !self.inner.fallback_key().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::canonical_json::verify_signature;

    fn counts(n: u64) -> BTreeMap<String, u64> {
        BTreeMap::from([(SIGNED_CURVE25519.to_owned(), n)])
    }

    #[test]
    fn first_upload_has_signed_device_keys_and_fifty_keys() {
        let account = Account::new("@a:x", "DEV");
        let upload = account.keys_for_upload().unwrap().unwrap();
        let device_keys = upload.device_keys.unwrap();
        let object = device_keys.as_object().unwrap();
        assert_eq!(object["user_id"], "@a:x");
        assert_eq!(object["device_id"], "DEV");
        let ed = account.identity_keys().ed25519;
        assert_eq!(object["keys"]["ed25519:DEV"], ed.to_base64());
        verify_signature(object, "@a:x", "ed25519:DEV", &ed, "device keys").unwrap();

        assert_eq!(upload.one_time_keys.len(), 50);
        for (id, key) in &upload.one_time_keys {
            assert!(id.starts_with("signed_curve25519:"));
            let key = key.as_object().unwrap();
            assert!(key.get("fallback").is_none());
            verify_signature(key, "@a:x", "ed25519:DEV", &ed, "one-time key").unwrap();
        }
        assert_eq!(upload.fallback_keys.len(), 1);
        let fallback = upload.fallback_keys.values().next().unwrap();
        assert_eq!(fallback["fallback"], true);
        verify_signature(
            fallback.as_object().unwrap(),
            "@a:x",
            "ed25519:DEV",
            &ed,
            "fallback key",
        )
        .unwrap();
    }

    #[test]
    fn tops_up_toward_fifty_and_regenerates_used_fallback() {
        let mut account = Account::new("@a:x", "DEV");
        account.mark_uploaded(&counts(50));
        assert!(account.keys_for_upload().unwrap().is_none());

        let used = vec![SIGNED_CURVE25519.to_owned()];
        account.update_key_counts(&counts(50), Some(&used));
        assert!(account.keys_for_upload().unwrap().is_none());

        account.update_key_counts(&counts(37), Some(&used));
        assert_eq!(account.unpublished_one_time_key_count(), 13);
        assert!(!account.has_unpublished_fallback_key());
        // A second sync before the upload went out must not add 13 more.
        account.update_key_counts(&counts(37), Some(&used));
        assert_eq!(account.unpublished_one_time_key_count(), 13);
        account.mark_uploaded(&counts(50));

        // The server no longer lists the fallback key: it was used.
        account.update_key_counts(&counts(50), Some(&[]));
        assert!(account.has_unpublished_fallback_key());
        let upload = account.keys_for_upload().unwrap().unwrap();
        assert!(upload.device_keys.is_none());
        assert_eq!(upload.fallback_keys.len(), 1);

        // A server that omits the field tells us nothing about fallback keys.
        account.mark_uploaded(&counts(50));
        account.update_key_counts(&counts(50), None);
        assert!(!account.has_unpublished_fallback_key());
    }
}
