//! Things the core noticed that the application should know about (and may
//! show to the user), collected until `OlmMachine::take_events` is called.

/// A known device was offered with different identity keys. The new keys
/// were refused; the known ones stay in use. Public keys only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChangeWarning {
    /// The device's owner.
    pub user_id: String,
    /// The device.
    pub device_id: String,
    /// The Ed25519 key in use (unpadded base64).
    pub known_ed25519: String,
    /// The Curve25519 key in use (unpadded base64).
    pub known_curve25519: String,
    /// The Ed25519 key that was offered and refused.
    pub offered_ed25519: String,
    /// The Curve25519 key that was offered and refused.
    pub offered_curve25519: String,
}

/// Something the crypto core noticed (see `OlmMachine::take_events`). The
/// fields name users, devices, rooms and sessions; `reason`s are safe to
/// log and hold no key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CryptoEvent {
    /// A known device's keys changed; the change was refused.
    KeyChange(KeyChangeWarning),
    /// Device keys failed validation (bad signature, mismatched ids, …) and
    /// were ignored.
    InvalidDeviceKeys {
        /// The device's owner.
        user_id: String,
        /// The device.
        device_id: String,
        /// What was wrong with them.
        reason: String,
    },
    /// A user's cross-signing identity (master key) was replaced: "this
    /// person's keys changed". Their devices are no longer verified through
    /// the old identity; `was_verified` says whether the old one was.
    IdentityChanged {
        /// Whose identity.
        user_id: String,
        /// Whether the local user had verified the old identity.
        was_verified: bool,
    },
    /// A user's cross-signing keys failed validation and were ignored.
    InvalidCrossSigningKeys {
        /// Whose keys.
        user_id: String,
        /// What was wrong with them.
        reason: String,
    },
    /// A device is gone from its owner's device list.
    DeviceRemoved {
        /// The device's owner.
        user_id: String,
        /// The device.
        device_id: String,
    },
    /// `/keys/query` reported failures for these servers.
    DeviceQueryFailed {
        /// The servers whose devices could not be fetched.
        servers: Vec<String>,
    },
    /// A one-time key from `/keys/claim` was unusable, or none was returned:
    /// no Olm session could be made with the device.
    OlmSessionUnavailable {
        /// The device's owner.
        user_id: String,
        /// The device.
        device_id: String,
        /// Why.
        reason: String,
    },
    /// An encrypted to-device event could not be decrypted or failed the
    /// payload checks.
    UndecryptableToDevice {
        /// Who sent it.
        sender: String,
        /// Why it failed.
        reason: String,
    },
    /// Decryption from this device failed; a new Olm session is being set
    /// up and an `m.dummy` sent over it so the sender moves to it.
    WedgedSessionRecovery {
        /// The device's owner.
        user_id: String,
        /// The device.
        device_id: String,
    },
    /// A room key arrived but was not stored.
    RoomKeyRejected {
        /// Who sent it.
        sender: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A room key was stored.
    RoomKeyReceived {
        /// The user who shared (or forwarded) it.
        sender: String,
        /// The room it is for.
        room_id: String,
        /// The Megolm session id.
        session_id: String,
        /// Whether it was forwarded (by another of our devices) rather than
        /// shared by its creator.
        forwarded: bool,
    },
    /// An `m.room_key_request` was not answered.
    KeyRequestIgnored {
        /// The requesting device's owner.
        user_id: String,
        /// The requesting device.
        device_id: String,
        /// Why it was not answered.
        reason: String,
    },
    /// An Olm message queued for a device was dropped because no session
    /// could be made with it.
    ToDeviceDropped {
        /// The device's owner.
        user_id: String,
        /// The device.
        device_id: String,
        /// The type of the dropped message.
        event_type: String,
    },
    /// A verification changed phase (requested, ready, emoji to show,
    /// done, cancelled…): look it up with `OlmMachine::verification`.
    VerificationChanged {
        /// The flow.
        flow_id: String,
        /// Who it is with.
        other_user: String,
    },
    /// A verification succeeded but the cross-signing signature that should
    /// follow could not be made; the device is still verified locally.
    VerificationSigningFailed {
        /// The flow.
        flow_id: String,
        /// Why.
        reason: String,
    },
}
