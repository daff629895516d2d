//! Trusting devices: the user's own decision about a device (after comparing
//! its fingerprint out of band), and the trust that follows from it and
//! from cross-signing.

use std::ffi::c_char;

use cloister_sdk::crypto::{DeviceTrust, LocalTrust};

use crate::client::{cloister_client, with_client};
use crate::result::*;
use crate::runtime::block_on;
use crate::types::out;

/// How far a device can be trusted (`cloister_client_device_trust`).
/// Stable values.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cloister_device_trust {
    /// Verified: marked so by the user, or signed by its owner's
    /// self-signing key where the user verified the owner's identity.
    CLOISTER_DEVICE_TRUST_VERIFIED = 0,
    /// Signed by its owner's self-signing key; the owner is not verified.
    CLOISTER_DEVICE_TRUST_CROSS_SIGNED = 1,
    /// Its owner has a cross-signing identity that did not sign it: show
    /// it as suspicious.
    CLOISTER_DEVICE_TRUST_NOT_SIGNED_BY_OWNER = 2,
    /// Its owner has no cross-signing identity.
    CLOISTER_DEVICE_TRUST_UNVERIFIED = 3,
    /// Blocked by the user: it gets no room keys.
    CLOISTER_DEVICE_TRUST_BLOCKED = 4,
}

pub use cloister_device_trust::*;

/// The user's decision about a device (`cloister_client_set_device_trust`).
/// Stable values.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cloister_local_trust {
    /// No decision (the default).
    CLOISTER_LOCAL_TRUST_UNSET = 0,
    /// Checked out of band: trusted.
    CLOISTER_LOCAL_TRUST_VERIFIED = 1,
    /// Never send it room keys; rooms it had a key for rotate.
    CLOISTER_LOCAL_TRUST_BLOCKED = 2,
}

pub use cloister_local_trust::*;

fn to_c(trust: DeviceTrust) -> cloister_device_trust {
    match trust {
        DeviceTrust::Verified => CLOISTER_DEVICE_TRUST_VERIFIED,
        DeviceTrust::CrossSigned => CLOISTER_DEVICE_TRUST_CROSS_SIGNED,
        DeviceTrust::NotSignedByOwner => CLOISTER_DEVICE_TRUST_NOT_SIGNED_BY_OWNER,
        DeviceTrust::Unverified => CLOISTER_DEVICE_TRUST_UNVERIFIED,
        DeviceTrust::Blocked => CLOISTER_DEVICE_TRUST_BLOCKED,
    }
}

fn unknown_device() -> Error {
    Error::new(
        CLOISTER_RESULT_NOT_FOUND,
        "no such device of that user is known to this client",
    )
}

/// Write how far `user_id`'s device `device_id` can be trusted to
/// `*out_trust`. `CLOISTER_RESULT_NOT_FOUND` for a device this client does
/// not know (it learns devices as it syncs with rooms they are in).
#[no_mangle]
pub unsafe extern "C" fn cloister_client_device_trust(
    client: *const cloister_client,
    user_id: *const c_char,
    device_id: *const c_char,
    out_trust: *mut cloister_device_trust,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or writable (the header's contract for out-parameters).
        let out_trust = unsafe { out(out_trust) }?;
        // SAFETY: NULL or NUL-terminated strings that live through the call.
        let (user_id, device_id) = unsafe { (arg_str(user_id)?, arg_str(device_id)?) };
        let current = shared.logged_in()?;
        let trust =
            block_on(current.device_trust(user_id, device_id))?.ok_or_else(unknown_device)?;
        out_trust.put(to_c(trust));
        Ok(())
    })
}

/// Record the user's decision about a device: one of the
/// `CLOISTER_LOCAL_TRUST_*` values (others give
/// `CLOISTER_RESULT_INVALID_ARGUMENT`). Blocking a device rotates the keys
/// of rooms it held one for. `CLOISTER_RESULT_NOT_FOUND` for an unknown
/// device.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_set_device_trust(
    client: *mut cloister_client,
    user_id: *const c_char,
    device_id: *const c_char,
    trust: u32,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or NUL-terminated strings that live through the call.
        let (user_id, device_id) = unsafe { (arg_str(user_id)?, arg_str(device_id)?) };
        let trust = match trust {
            t if t == CLOISTER_LOCAL_TRUST_UNSET as u32 => LocalTrust::Unset,
            t if t == CLOISTER_LOCAL_TRUST_VERIFIED as u32 => LocalTrust::Verified,
            t if t == CLOISTER_LOCAL_TRUST_BLOCKED as u32 => LocalTrust::Blocked,
            _ => {
                return Err(Error::new(
                    CLOISTER_RESULT_INVALID_ARGUMENT,
                    "trust must be a CLOISTER_LOCAL_TRUST_* value",
                ))
            }
        };
        let current = shared.logged_in()?;
        if block_on(current.set_device_trust(user_id, device_id, trust))?? {
            Ok(())
        } else {
            Err(unknown_device())
        }
    })
}
