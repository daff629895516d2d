//! Interactive key verification over to-device messages (spec: "Key
//! verification framework" and "SAS verification"), as a state machine the
//! app drives: request or accept, start SAS, compare emoji or decimals,
//! confirm or cancel. When both sides confirmed and each checked the
//! other's MACs, the other device is marked verified and the cross-signing
//! signature that makes it stick is queued (own device: self-signing key;
//! someone else: their master key with our user-signing key; and this
//! device vouches for our own identity when the other own device showed it).
//!
//! Verification messages travel unencrypted, as Element sends them; their
//! security is the SAS itself. The ephemeral SAS keys cannot be persisted,
//! so a flow does not survive a restart, and every flow ends by timeout ten
//! minutes after its last message, as the spec asks.

mod emoji;
mod flow;
mod machine;
mod qr;
mod room;
mod sas;

pub use emoji::SasEmoji;
pub use flow::{VerificationInfo, VerificationPhase};

pub(crate) use flow::Flow;
pub(crate) use sas::SAS_V1;

/// The methods this SDK offers: emoji, and showing, scanning and
/// answering QR codes.
pub(crate) const OUR_METHODS: [&str; 4] = [SAS_V1, qr::QR_SHOW, qr::QR_SCAN, qr::RECIPROCATE];

/// A request older than this, or a flow idle for longer, is dropped.
pub(crate) const VERIFICATION_TIMEOUT_MS: u64 = 10 * 60 * 1000;
/// A request timestamped further ahead than this is not believed.
pub(crate) const VERIFICATION_FUTURE_MS: u64 = 5 * 60 * 1000;

/// The to-device event types of the framework.
pub(crate) const VERIFICATION_EVENTS: [&str; 8] = [
    "m.key.verification.request",
    "m.key.verification.ready",
    "m.key.verification.start",
    "m.key.verification.accept",
    "m.key.verification.key",
    "m.key.verification.mac",
    "m.key.verification.done",
    "m.key.verification.cancel",
];
