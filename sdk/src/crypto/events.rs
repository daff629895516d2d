//! Things the core noticed that the application should know about (and may
//! show to the user), collected until `OlmMachine::take_events` is called.

/// A known device was offered with different identity keys. The new keys
/// were refused; the known ones stay in use. Public keys only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChangeWarning {
    pub user_id: String,
    pub device_id: String,
    pub known_ed25519: String,
    pub known_curve25519: String,
    pub offered_ed25519: String,
    pub offered_curve25519: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CryptoEvent {
    /// A known device's keys changed; the change was refused.
    KeyChange(KeyChangeWarning),
    /// Device keys failed validation (bad signature, mismatched ids, …) and
    /// were ignored.
    InvalidDeviceKeys {
        user_id: String,
        device_id: String,
        reason: String,
    },
    /// A device is gone from its owner's device list.
    DeviceRemoved { user_id: String, device_id: String },
    /// `/keys/query` reported failures for these servers.
    DeviceQueryFailed { servers: Vec<String> },
    /// A one-time key from `/keys/claim` was unusable, or none was returned:
    /// no Olm session could be made with the device.
    OlmSessionUnavailable {
        user_id: String,
        device_id: String,
        reason: String,
    },
    /// An encrypted to-device event could not be decrypted or failed the
    /// payload checks.
    UndecryptableToDevice { sender: String, reason: String },
    /// Decryption from this device failed; a new Olm session is being set
    /// up and an `m.dummy` sent over it so the sender moves to it.
    WedgedSessionRecovery { user_id: String, device_id: String },
    /// A room key arrived but was not stored.
    RoomKeyRejected { sender: String, reason: String },
    /// A room key was stored.
    RoomKeyReceived {
        sender: String,
        room_id: String,
        session_id: String,
        forwarded: bool,
    },
    /// An `m.room_key_request` was not answered.
    KeyRequestIgnored {
        user_id: String,
        device_id: String,
        reason: String,
    },
    /// An Olm message queued for a device was dropped because no session
    /// could be made with it.
    ToDeviceDropped {
        user_id: String,
        device_id: String,
        event_type: String,
    },
}
