//! Other devices' keys, learned from `/keys/query` and kept up to date from
//! `device_lists` in sync.
//!
//! A device's identity keys never change: a device id that shows up with
//! new keys is either a server lying to us or a different device reusing an
//! id, and accepting it would let whoever holds the new keys read messages
//! meant for the old device. So the new keys are refused, the old ones kept,
//! and a [`KeyChangeWarning`] is reported.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use vodozemac::olm::IdentityKeys;
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey};

use super::canonical_json::verify_signature;
use super::error::CryptoError;
use super::events::{CryptoEvent, KeyChangeWarning};
use super::identities::{self, DeviceTrust, Local, UserIdentity};
use super::requests::{DeviceRef, KeysQueryResponse};

/// What the local user decided about a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum LocalTrust {
    /// No decision yet (the default): keys are shared, the device is shown
    /// as unverified.
    #[default]
    Unset,
    /// Checked out of band (for example by comparing Ed25519 fingerprints).
    Verified,
    /// Never send room keys to it; rooms it had a key for rotate.
    Blocked,
}

/// Another device's verified public keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The owner's user id.
    pub user_id: String,
    /// The device id.
    pub device_id: String,
    /// The device's Ed25519 signing key: its fingerprint.
    pub ed25519: Ed25519PublicKey,
    /// The device's Curve25519 identity key (Olm).
    pub curve25519: Curve25519PublicKey,
    /// The encryption algorithms the device supports.
    pub algorithms: Vec<String>,
    /// The name the owner gave the device, if any (unsigned: do not trust).
    pub display_name: Option<String>,
    /// What the local user decided about the device.
    pub local_trust: LocalTrust,
    /// Whether its owner's self-signing key signed it (cross-signing).
    pub cross_signed: bool,
}

impl Device {
    /// Whether the local user marked the device verified.
    pub fn is_verified(&self) -> bool {
        self.local_trust == LocalTrust::Verified
    }

    /// Whether the local user blocked the device (no room keys go to it).
    pub fn is_blocked(&self) -> bool {
        self.local_trust == LocalTrust::Blocked
    }

    /// Parse and check a device-keys object from `/keys/query`: the ids
    /// must be the ones it was listed under and it must carry a valid
    /// signature by its own Ed25519 key.
    pub fn from_device_keys(
        user_id: &str,
        device_id: &str,
        json: &Value,
    ) -> Result<Self, CryptoError> {
        let malformed = |reason: &str| CryptoError::Malformed {
            what: "device keys",
            reason: reason.to_owned(),
        };
        let object = json.as_object().ok_or_else(|| malformed("not an object"))?;
        if object.get("user_id").and_then(Value::as_str) != Some(user_id) {
            return Err(malformed(
                "user_id does not match the user it was listed under",
            ));
        }
        if object.get("device_id").and_then(Value::as_str) != Some(device_id) {
            return Err(malformed(
                "device_id does not match the device it was listed under",
            ));
        }
        let key = |algorithm: &str| {
            object
                .get("keys")
                .and_then(|k| k.get(format!("{algorithm}:{device_id}")))
                .and_then(Value::as_str)
                .ok_or_else(|| malformed(&format!("no {algorithm} key")))
        };
        let ed25519 = Ed25519PublicKey::from_base64(key("ed25519")?)
            .map_err(|_| malformed("invalid ed25519 key"))?;
        let curve25519 = Curve25519PublicKey::from_base64(key("curve25519")?)
            .map_err(|_| malformed("invalid curve25519 key"))?;
        verify_signature(
            object,
            user_id,
            &format!("ed25519:{device_id}"),
            &ed25519,
            "device keys",
        )?;
        let algorithms = object
            .get("algorithms")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let display_name = object
            .get("unsigned")
            .and_then(|u| u.get("device_display_name"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Self {
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            ed25519,
            curve25519,
            algorithms,
            display_name,
            local_trust: LocalTrust::Unset,
            cross_signed: false,
        })
    }

    fn same_keys(&self, other: &Device) -> bool {
        self.ed25519 == other.ed25519 && self.curve25519 == other.curve25519
    }
}

#[derive(Default)]
pub(crate) struct UserDevices {
    pub(crate) devices: BTreeMap<String, Device>,
    /// Their cross-signing identity, if they have one.
    pub(crate) identity: Option<UserIdentity>,
    pub(crate) tracked: bool,
    pub(crate) outdated: bool,
    /// Bumped on every invalidation, so a query answered after a newer
    /// invalidation does not clear `outdated`.
    pub(crate) generation: u64,
}

/// What a `/keys/query` response changed.
#[derive(Debug, Default)]
pub(crate) struct QueryOutcome {
    pub removed: Vec<DeviceRef>,
    pub events: Vec<CryptoEvent>,
}

pub(crate) struct DeviceStore {
    own_user: String,
    own_device: String,
    own_keys: IdentityKeys,
    pub(crate) users: HashMap<String, UserDevices>,
}

impl DeviceStore {
    pub(crate) fn new(own_user: &str, own_device: &str, own_keys: IdentityKeys) -> Self {
        let mut store = Self {
            own_user: own_user.to_owned(),
            own_device: own_device.to_owned(),
            own_keys,
            users: HashMap::new(),
        };
        // Our own other devices get room keys too, and answer key requests.
        store.track_users([own_user]);
        store
    }

    /// Start tracking users we share an encrypted room with; new ones are
    /// queued for a `/keys/query`.
    pub(crate) fn track_users<'a>(&mut self, users: impl IntoIterator<Item = &'a str>) {
        for user in users {
            let entry = self.users.entry(user.to_owned()).or_default();
            if !entry.tracked {
                entry.tracked = true;
                entry.outdated = true;
                entry.generation += 1;
            }
        }
    }

    /// `device_lists.changed`: a tracked user's devices must be queried again.
    pub(crate) fn mark_changed<'a>(&mut self, users: impl IntoIterator<Item = &'a str>) {
        for user in users {
            if let Some(entry) = self.users.get_mut(user).filter(|e| e.tracked) {
                entry.outdated = true;
                entry.generation += 1;
            }
        }
    }

    /// `device_lists.left`: we share no room with them any more. Their keys
    /// are kept to identify senders of old messages, but no longer updated.
    pub(crate) fn mark_left<'a>(&mut self, users: impl IntoIterator<Item = &'a str>) {
        for user in users {
            if user == self.own_user {
                continue;
            }
            if let Some(entry) = self.users.get_mut(user) {
                entry.tracked = false;
                entry.outdated = true;
                entry.generation += 1;
            }
        }
    }

    pub(crate) fn is_outdated(&self, user: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.tracked && u.outdated)
    }

    /// Tracked users whose devices must be queried, with their generation.
    pub(crate) fn users_to_query(&self) -> HashMap<String, u64> {
        self.users
            .iter()
            .filter(|(_, u)| u.tracked && u.outdated)
            .map(|(id, u)| (id.clone(), u.generation))
            .collect()
    }

    pub(crate) fn get(&self, user: &str, device: &str) -> Option<&Device> {
        self.users.get(user)?.devices.get(device)
    }

    pub(crate) fn user_devices(&self, user: &str) -> impl Iterator<Item = &Device> {
        self.users
            .get(user)
            .into_iter()
            .flat_map(|u| u.devices.values())
    }

    pub(crate) fn find_by_curve25519(
        &self,
        user: &str,
        key: &Curve25519PublicKey,
    ) -> Option<&Device> {
        self.user_devices(user).find(|d| &d.curve25519 == key)
    }

    pub(crate) fn set_local_trust(&mut self, user: &str, device: &str, trust: LocalTrust) -> bool {
        match self
            .users
            .get_mut(user)
            .and_then(|u| u.devices.get_mut(device))
        {
            Some(d) => {
                d.local_trust = trust;
                true
            }
            None => false,
        }
    }

    /// Apply a `/keys/query` response for a request that asked about the
    /// users in `generations`.
    pub(crate) fn receive_query_response(
        &mut self,
        mut response: KeysQueryResponse,
        generations: &HashMap<String, u64>,
    ) -> QueryOutcome {
        let mut outcome = QueryOutcome::default();
        if !response.failures.is_empty() {
            outcome.events.push(CryptoEvent::DeviceQueryFailed {
                servers: response.failures.keys().cloned().collect(),
            });
        }
        let mut device_keys = std::mem::take(&mut response.device_keys);
        // Our own first: whether others are verified depends on it.
        let mut users: Vec<&String> = generations.keys().collect();
        users.sort_by_key(|u| **u != self.own_user);
        for user in users {
            let generation = generations[user];
            self.update_identity(&response, user, &mut outcome);
            // A user the server did not list (its `failures`) is not a user
            // without devices: their known devices stay. They are not
            // retried in a loop either; the next `device_lists.changed` will.
            if let Some(listed) = device_keys.remove(user) {
                self.update_user(user, listed, &mut outcome);
            }
            if let Some(entry) = self.users.get_mut(user) {
                if entry.generation == generation {
                    entry.outdated = false;
                }
            }
        }
        outcome
    }

    /// Takes `user`'s cross-signing identity from `response`. A response
    /// without one keeps what we knew: the spec has no way to delete an
    /// identity, only to replace it, which is reported.
    fn update_identity(
        &mut self,
        response: &KeysQueryResponse,
        user: &str,
        outcome: &mut QueryOutcome,
    ) {
        let local = Local {
            user_id: &self.own_user,
            device_id: &self.own_device,
            device_key: &self.own_keys.ed25519,
        };
        let identity = match identities::from_query(response, user, &local) {
            Ok(Some(identity)) => identity,
            Ok(None) => return,
            Err(error) => {
                outcome.events.push(CryptoEvent::InvalidCrossSigningKeys {
                    user_id: user.to_owned(),
                    reason: error.to_string(),
                });
                return;
            }
        };
        let own = self.identity(&self.own_user).cloned();
        let entry = self.users.entry(user.to_owned()).or_default();
        if let Some(known) = &entry.identity {
            if known.master != identity.master {
                let own = if user == self.own_user {
                    Some(known)
                } else {
                    own.as_ref()
                };
                outcome.events.push(CryptoEvent::IdentityChanged {
                    user_id: user.to_owned(),
                    was_verified: known.is_verified(own),
                });
            }
        }
        entry.identity = Some(identity);
    }

    pub(crate) fn identity(&self, user: &str) -> Option<&UserIdentity> {
        self.users.get(user)?.identity.as_ref()
    }

    /// How far `user`'s `device` can be trusted; None for an unknown device.
    pub(crate) fn device_trust(&self, user: &str, device: &str) -> Option<DeviceTrust> {
        if user == self.own_user && device == self.own_device {
            // This device holds its own keys: nothing to doubt.
            return Some(DeviceTrust::Verified);
        }
        let d = self.get(user, device)?;
        Some(if d.is_blocked() {
            DeviceTrust::Blocked
        } else if d.is_verified() {
            DeviceTrust::Verified
        } else {
            match self.identity(user) {
                None => DeviceTrust::Unverified,
                Some(_) if !d.cross_signed => DeviceTrust::NotSignedByOwner,
                Some(owner) if owner.is_verified(self.identity(&self.own_user)) => {
                    DeviceTrust::Verified
                }
                Some(_) => DeviceTrust::CrossSigned,
            }
        })
    }

    fn update_user(
        &mut self,
        user: &str,
        listed: BTreeMap<String, Value>,
        outcome: &mut QueryOutcome,
    ) {
        let entry = self.users.entry(user.to_owned()).or_default();
        let mut seen = Vec::new();
        for (device_id, json) in listed {
            seen.push(device_id.clone());
            let device = match Device::from_device_keys(user, &device_id, &json) {
                Ok(mut device) => {
                    device.cross_signed = entry
                        .identity
                        .as_ref()
                        .is_some_and(|i| identities::signs_device(i, &json));
                    device
                }
                Err(error) => {
                    outcome.events.push(CryptoEvent::InvalidDeviceKeys {
                        user_id: user.to_owned(),
                        device_id,
                        reason: error.to_string(),
                    });
                    continue;
                }
            };
            if user == self.own_user && device_id == self.own_device {
                if device.ed25519 != self.own_keys.ed25519
                    || device.curve25519 != self.own_keys.curve25519
                {
                    outcome
                        .events
                        .push(CryptoEvent::KeyChange(KeyChangeWarning {
                            user_id: device.user_id.clone(),
                            device_id: device.device_id.clone(),
                            known_ed25519: self.own_keys.ed25519.to_base64(),
                            known_curve25519: self.own_keys.curve25519.to_base64(),
                            offered_ed25519: device.ed25519.to_base64(),
                            offered_curve25519: device.curve25519.to_base64(),
                        }));
                }
                continue;
            }
            match entry.devices.get_mut(&device_id) {
                Some(known) if !known.same_keys(&device) => {
                    outcome
                        .events
                        .push(CryptoEvent::KeyChange(KeyChangeWarning {
                            user_id: known.user_id.clone(),
                            device_id: known.device_id.clone(),
                            known_ed25519: known.ed25519.to_base64(),
                            known_curve25519: known.curve25519.to_base64(),
                            offered_ed25519: device.ed25519.to_base64(),
                            offered_curve25519: device.curve25519.to_base64(),
                        }));
                }
                Some(known) => {
                    known.display_name = device.display_name;
                    known.algorithms = device.algorithms;
                    known.cross_signed = device.cross_signed;
                }
                None => {
                    entry.devices.insert(device_id, device);
                }
            }
        }
        let removed: Vec<String> = entry
            .devices
            .keys()
            .filter(|d| !seen.contains(d))
            .cloned()
            .collect();
        for device_id in removed {
            entry.devices.remove(&device_id);
            outcome.events.push(CryptoEvent::DeviceRemoved {
                user_id: user.to_owned(),
                device_id: device_id.clone(),
            });
            outcome.removed.push((user.to_owned(), device_id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::account::Account;

    const ME: &str = "@me:x";
    const BOB: &str = "@bob:x";

    fn response(listed: Option<Value>) -> KeysQueryResponse {
        let mut response = KeysQueryResponse::default();
        match listed {
            Some(devices) => {
                let devices = serde_json::from_value(devices).unwrap();
                response.device_keys.insert(BOB.to_owned(), devices);
            }
            None => {
                response
                    .failures
                    .insert("x".to_owned(), serde_json::json!({}));
            }
        }
        response
    }

    #[test]
    fn a_failed_query_keeps_devices_and_an_empty_list_removes_them() {
        let me = Account::new(ME, "ME");
        let bob = Account::new(BOB, "BOB1");
        let mut store = DeviceStore::new(ME, "ME", me.identity_keys());
        store.track_users([BOB]);
        let generations = store.users_to_query();
        let listed = serde_json::json!({"BOB1": bob.device_keys().unwrap()});
        store.receive_query_response(response(Some(listed)), &generations);
        assert!(store.get(BOB, "BOB1").is_some());
        assert!(!store.is_outdated(BOB));

        store.mark_changed([BOB]);
        let generations = store.users_to_query();
        let outcome = store.receive_query_response(response(None), &generations);
        assert!(
            store.get(BOB, "BOB1").is_some(),
            "a failure is not a deletion"
        );
        assert!(outcome.removed.is_empty());

        store.mark_changed([BOB]);
        let generations = store.users_to_query();
        let outcome =
            store.receive_query_response(response(Some(serde_json::json!({}))), &generations);
        assert!(store.get(BOB, "BOB1").is_none());
        assert_eq!(outcome.removed, [(BOB.to_owned(), "BOB1".to_owned())]);
    }

    #[test]
    fn an_invalidation_during_a_query_keeps_the_user_outdated() {
        let me = Account::new(ME, "ME");
        let bob = Account::new(BOB, "BOB1");
        let mut store = DeviceStore::new(ME, "ME", me.identity_keys());
        store.track_users([BOB]);
        let generations = store.users_to_query();
        // device_lists.changed arrives while the query is in flight.
        store.mark_changed([BOB]);
        let listed = serde_json::json!({"BOB1": bob.device_keys().unwrap()});
        store.receive_query_response(response(Some(listed)), &generations);
        assert!(store.get(BOB, "BOB1").is_some());
        assert!(
            store.is_outdated(BOB),
            "the newer change still needs a query"
        );
        // Untracked users' changes are ignored.
        store.mark_left([BOB]);
        assert!(!store.is_outdated(BOB));
        assert!(!store.users_to_query().contains_key(BOB));
    }
}
