//! Cross-signing and emoji (SAS) verification for C apps: the app drives a
//! verification as a state machine — request or accept, start SAS, show
//! the emoji, confirm or report a mismatch, or cancel — and learns about
//! changes from `CLOISTER_EVENT_VERIFICATION` events of the sync loop.

use std::ffi::{c_char, CString};
use std::sync::OnceLock;

use cloister_sdk::crypto::{SasEmoji, VerificationPhase};

use crate::client::{cloister_client, with_client};
use crate::result::*;
use crate::runtime::block_on;
use crate::types::{give_string, out};

/// Where a verification stands (`cloister_client_verification_phase`).
/// Stable values.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cloister_verification_phase {
    /// Requested; the other side has not accepted yet. When the request is
    /// theirs, `cloister_client_verification_accept` accepts it.
    CLOISTER_VERIFICATION_REQUESTED = 0,
    /// Both ready: either side may `cloister_client_verification_start_sas`.
    CLOISTER_VERIFICATION_READY = 1,
    /// SAS is being negotiated.
    CLOISTER_VERIFICATION_STARTED = 2,
    /// Show `cloister_client_verification_sas`'s emoji (or numbers) and ask
    /// the user whether they match the other screen.
    CLOISTER_VERIFICATION_SHOW_SAS = 3,
    /// This side confirmed; waiting for the other.
    CLOISTER_VERIFICATION_CONFIRMED = 4,
    /// Verified: the other device is trusted (and cross-signed when the
    /// keys allow).
    CLOISTER_VERIFICATION_DONE = 5,
    /// Ended without verifying (cancelled, mismatch, timeout).
    CLOISTER_VERIFICATION_CANCELLED = 6,
    /// The other device scanned the QR code this one shows: ask the user
    /// whether it says so, then `cloister_client_verification_confirm_qr_scanned`.
    CLOISTER_VERIFICATION_QR_SCANNED = 7,
}

pub use cloister_verification_phase::*;

impl cloister_verification_phase {
    /// The phase's name without the prefix, for event bodies and logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            CLOISTER_VERIFICATION_REQUESTED => "requested",
            CLOISTER_VERIFICATION_READY => "ready",
            CLOISTER_VERIFICATION_STARTED => "started",
            CLOISTER_VERIFICATION_SHOW_SAS => "show_sas",
            CLOISTER_VERIFICATION_CONFIRMED => "confirmed",
            CLOISTER_VERIFICATION_DONE => "done",
            CLOISTER_VERIFICATION_CANCELLED => "cancelled",
            CLOISTER_VERIFICATION_QR_SCANNED => "qr_scanned",
        }
    }
}

pub(crate) fn phase_to_c(phase: &VerificationPhase) -> cloister_verification_phase {
    match phase {
        VerificationPhase::Requested => CLOISTER_VERIFICATION_REQUESTED,
        VerificationPhase::Ready => CLOISTER_VERIFICATION_READY,
        VerificationPhase::Started => CLOISTER_VERIFICATION_STARTED,
        VerificationPhase::ShowSas { .. } => CLOISTER_VERIFICATION_SHOW_SAS,
        VerificationPhase::Confirmed => CLOISTER_VERIFICATION_CONFIRMED,
        VerificationPhase::Done => CLOISTER_VERIFICATION_DONE,
        VerificationPhase::Cancelled { .. } => CLOISTER_VERIFICATION_CANCELLED,
        VerificationPhase::QrScanned => CLOISTER_VERIFICATION_QR_SCANNED,
    }
}

/// Create this account's cross-signing identity on this device, which
/// becomes its first trusted device. `password` (may be NULL) answers the
/// server's user-interactive auth: needed when replacing an identity
/// (`reset`), sometimes the first time. Errors: `CLOISTER_RESULT_INVALID_STATE`
/// when an identity exists and `reset` is false, `CLOISTER_RESULT_FORBIDDEN`
/// when the server wants a password that was not given or was wrong.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_bootstrap_cross_signing(
    client: *mut cloister_client,
    password: *const c_char,
    reset: bool,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or a NUL-terminated string that lives through the call.
        let password = unsafe { opt_str(password) }?;
        let current = shared.logged_in()?;
        block_on(current.bootstrap_cross_signing(password, reset))??;
        Ok(())
    })
}

/// Write whether `user_id`'s cross-signing identity is verified to
/// `*out_verified` (for the own user: this device vouches for it).
#[no_mangle]
pub unsafe extern "C" fn cloister_client_identity_verified(
    client: *const cloister_client,
    user_id: *const c_char,
    out_verified: *mut bool,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or writable (the header's contract for out-parameters).
        let out_verified = unsafe { out(out_verified) }?;
        // SAFETY: NULL or a NUL-terminated string that lives through the call.
        let user_id = unsafe { arg_str(user_id) }?;
        check_user_id(user_id)?;
        let current = shared.logged_in()?;
        out_verified.put(block_on(current.is_identity_verified(user_id))?);
        Ok(())
    })
}

/// Ask `user_id` to verify: their device `device_id`, or every device of
/// theirs this client knows when NULL (for the own user: every other own
/// device). Writes the flow id (free with `cloister_string_free`) to
/// `*out_flow_id`. `CLOISTER_RESULT_INVALID_STATE` when no device of theirs
/// is known yet.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_request_verification(
    client: *mut cloister_client,
    user_id: *const c_char,
    device_id: *const c_char,
    out_flow_id: *mut *mut c_char,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or writable (the header's contract for out-parameters).
        let out_flow_id = unsafe { out(out_flow_id) }?;
        // SAFETY: NULL or NUL-terminated strings that live through the call.
        let (user_id, device_id) = unsafe { (arg_str(user_id)?, opt_str(device_id)?) };
        check_user_id(user_id)?;
        let devices: Vec<String> = device_id.into_iter().map(str::to_owned).collect();
        let current = shared.logged_in()?;
        let flow = block_on(current.request_verification(user_id, &devices))??;
        out_flow_id.put(give_string(&flow));
        Ok(())
    })
}

/// Ask `user_id` to verify in the room `room_id` (a DM with them), as
/// Element verifies other people. Writes the flow id (the request event's
/// id; free with `cloister_string_free`) to `*out_flow_id`. The flow then
/// goes on exactly as one over to-device.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_request_verification_in_room(
    client: *mut cloister_client,
    room_id: *const c_char,
    user_id: *const c_char,
    out_flow_id: *mut *mut c_char,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or writable (the header's contract for out-parameters).
        let out_flow_id = unsafe { out(out_flow_id) }?;
        // SAFETY: NULL or NUL-terminated strings that live through the call.
        let (room_id, user_id) = unsafe { (arg_str(room_id)?, arg_str(user_id)?) };
        check_room_id(room_id)?;
        check_user_id(user_id)?;
        let current = shared.logged_in()?;
        let flow = block_on(current.request_verification_in_room(room_id, user_id))??;
        out_flow_id.put(give_string(&flow));
        Ok(())
    })
}

/// What a `flow_step` call does.
#[derive(Clone, Copy)]
enum Step {
    Accept,
    StartSas,
    Confirm,
    Mismatch,
    Cancel,
    ConfirmQrScanned,
}

fn flow_step(client: *mut cloister_client, flow_id: *const c_char, step: Step) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract of every
    // caller).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or a NUL-terminated string that lives through the call.
        let flow = unsafe { arg_str(flow_id) }?;
        let current = shared.logged_in()?;
        block_on(async {
            match step {
                Step::Accept => current.accept_verification(flow).await,
                Step::StartSas => current.start_sas(flow).await,
                Step::Confirm => current.confirm_sas(flow).await,
                Step::Mismatch => current.sas_mismatch(flow).await,
                Step::Cancel => current.cancel_verification(flow).await,
                Step::ConfirmQrScanned => current.confirm_qr_scanned(flow).await,
            }
        })??;
        Ok(())
    })
}

/// Accept another device's request (phase `REQUESTED`, theirs).
/// `CLOISTER_RESULT_INVALID_STATE` at any other moment or for an unknown
/// flow; the flow goes on unchanged.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_verification_accept(
    client: *mut cloister_client,
    flow_id: *const c_char,
) -> cloister_result {
    flow_step(client, flow_id, Step::Accept)
}

/// Start emoji verification on a `READY` flow.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_verification_start_sas(
    client: *mut cloister_client,
    flow_id: *const c_char,
) -> cloister_result {
    flow_step(client, flow_id, Step::StartSas)
}

/// The user says the emoji match (phase `SHOW_SAS`).
#[no_mangle]
pub unsafe extern "C" fn cloister_client_verification_confirm(
    client: *mut cloister_client,
    flow_id: *const c_char,
) -> cloister_result {
    flow_step(client, flow_id, Step::Confirm)
}

/// The user says the emoji differ: the flow is cancelled on both sides.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_verification_mismatch(
    client: *mut cloister_client,
    flow_id: *const c_char,
) -> cloister_result {
    flow_step(client, flow_id, Step::Mismatch)
}

/// Cancel a verification (the user gave up).
#[no_mangle]
pub unsafe extern "C" fn cloister_client_verification_cancel(
    client: *mut cloister_client,
    flow_id: *const c_char,
) -> cloister_result {
    flow_step(client, flow_id, Step::Cancel)
}

/// In phase `READY`, when the other side can scan: write the bytes of a QR
/// code to show (render them in byte mode) to `*out_code` (free with
/// `cloister_buffer_free`). `CLOISTER_RESULT_INVALID_STATE` when no code can
/// be shown now (the other side cannot scan, or a key is not known yet).
#[no_mangle]
pub unsafe extern "C" fn cloister_client_verification_qr_code(
    client: *mut cloister_client,
    flow_id: *const c_char,
    out_code: *mut *mut crate::types::cloister_buffer,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or writable (the header's contract for out-parameters).
        let out_code = unsafe { out(out_code) }?;
        // SAFETY: NULL or a NUL-terminated string that lives through the call.
        let flow = unsafe { arg_str(flow_id) }?;
        let current = shared.logged_in()?;
        let code = block_on(current.verification_qr_code(flow))??;
        out_code.put(crate::types::cloister_buffer::new(code));
        Ok(())
    })
}

/// In phase `READY`: the camera read the other device's QR code (`data`,
/// `len` bytes). Its keys are checked; a code with other keys cancels the
/// flow and returns `CLOISTER_RESULT_INVALID_STATE`.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_verification_scan_qr_code(
    client: *mut cloister_client,
    flow_id: *const c_char,
    data: *const u8,
    len: usize,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or a NUL-terminated string that lives through the call.
        let flow = unsafe { arg_str(flow_id) }?;
        if data.is_null() {
            return Err(Error::code(CLOISTER_RESULT_NULL_ARGUMENT));
        }
        // SAFETY: not NULL (checked); by the header's contract `len`
        // readable bytes that live through the call.
        let data = unsafe { std::slice::from_raw_parts(data, len) };
        let current = shared.logged_in()?;
        block_on(current.scan_verification_qr_code(flow, data))??;
        Ok(())
    })
}

/// In phase `QR_SCANNED`: the user confirmed the other device says it
/// scanned our code.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_verification_confirm_qr_scanned(
    client: *mut cloister_client,
    flow_id: *const c_char,
) -> cloister_result {
    flow_step(client, flow_id, Step::ConfirmQrScanned)
}

/// Write a flow's phase to `*out_phase`. `CLOISTER_RESULT_NOT_FOUND` for a
/// flow this client does not know (or forgot, ten minutes after it ended).
#[no_mangle]
pub unsafe extern "C" fn cloister_client_verification_phase(
    client: *const cloister_client,
    flow_id: *const c_char,
    out_phase: *mut cloister_verification_phase,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or writable (the header's contract for out-parameters).
        let out_phase = unsafe { out(out_phase) }?;
        // SAFETY: NULL or a NUL-terminated string that lives through the call.
        let flow = unsafe { arg_str(flow_id) }?;
        let current = shared.logged_in()?;
        let info = block_on(current.verification(flow))?.ok_or_else(unknown_flow)?;
        out_phase.put(phase_to_c(&info.phase));
        Ok(())
    })
}

/// In phase `SHOW_SAS`: write the seven emoji (indices into the spec's
/// table; see `cloister_sas_emoji_symbol` and `cloister_sas_emoji_name`)
/// to `out_emoji`, an array of 7, and the three numbers (1000–9191) to
/// `out_decimals`, an array of 3; nothing is written on error. `CLOISTER_RESULT_INVALID_STATE` in any other phase.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_verification_sas(
    client: *const cloister_client,
    flow_id: *const c_char,
    out_emoji: *mut u8,
    out_decimals: *mut u16,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        if out_emoji.is_null() || out_decimals.is_null() {
            return Err(Error::code(CLOISTER_RESULT_NULL_ARGUMENT));
        }
        // SAFETY: NULL or a NUL-terminated string that lives through the call.
        let flow = unsafe { arg_str(flow_id) }?;
        let current = shared.logged_in()?;
        let info = block_on(current.verification(flow))?.ok_or_else(unknown_flow)?;
        let VerificationPhase::ShowSas { emoji, decimals } = info.phase else {
            return Err(Error::new(
                CLOISTER_RESULT_INVALID_STATE,
                "the verification shows no emoji now",
            ));
        };
        // SAFETY: not NULL (checked); by the header's contract writable
        // arrays of 7 and 3 elements that live through the call.
        let (emoji_out, decimals_out) = unsafe {
            (
                std::slice::from_raw_parts_mut(out_emoji, 7),
                std::slice::from_raw_parts_mut(out_decimals, 3),
            )
        };
        for (slot, e) in emoji_out.iter_mut().zip(&emoji) {
            *slot = e.index;
        }
        decimals_out.copy_from_slice(&[decimals.0, decimals.1, decimals.2]);
        Ok(())
    })
}

fn unknown_flow() -> Error {
    Error::new(
        CLOISTER_RESULT_NOT_FOUND,
        "no such verification is known to this client",
    )
}

/// The 64 emoji as C strings, made once and kept for the process.
fn emoji_table() -> &'static [(CString, CString)] {
    static TABLE: OnceLock<Vec<(CString, CString)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..64)
            .filter_map(SasEmoji::from_index)
            .map(|e| {
                (
                    crate::types::c_string(e.symbol),
                    crate::types::c_string(e.description),
                )
            })
            .collect()
    })
}

/// The emoji with this index (0–63) as a static UTF-8 string; NULL beyond.
/// Never free it.
#[no_mangle]
pub extern "C" fn cloister_sas_emoji_symbol(index: u8) -> *const c_char {
    guard_value(std::ptr::null(), || {
        emoji_table()
            .get(usize::from(index))
            .map_or(std::ptr::null(), |(symbol, _)| symbol.as_ptr())
    })
}

/// The English name of the emoji with this index (the spec's; translate
/// it with the spec's table); NULL beyond 63. Never free it.
#[no_mangle]
pub extern "C" fn cloister_sas_emoji_name(index: u8) -> *const c_char {
    guard_value(std::ptr::null(), || {
        emoji_table()
            .get(usize::from(index))
            .map_or(std::ptr::null(), |(_, name)| name.as_ptr())
    })
}

/// Set up recovery: a new recovery key that keeps this account's
/// cross-signing keys and its key backup's key on the server, encrypted; the
/// key backup is created when there is none, and room keys go to it from
/// now on. Writes the recovery key (show it once; free with
/// `cloister_string_free`) to `*out_recovery_key`. `passphrase` (may be
/// NULL) derives the key from a passphrase instead; the recovery key still
/// works too. `CLOISTER_RESULT_INVALID_STATE` when this device holds no
/// cross-signing keys (bootstrap, or recover, first).
#[no_mangle]
pub unsafe extern "C" fn cloister_client_recovery_setup(
    client: *mut cloister_client,
    passphrase: *const c_char,
    out_recovery_key: *mut *mut c_char,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or writable (the header's contract for out-parameters).
        let out_recovery_key = unsafe { out(out_recovery_key) }?;
        // SAFETY: NULL or a NUL-terminated string that lives through the call.
        let passphrase = unsafe { opt_str(passphrase) }?;
        let current = shared.logged_in()?;
        if !block_on(current.has_cross_signing_keys())? {
            return Err(Error::new(
                CLOISTER_RESULT_INVALID_STATE,
                "this device holds no cross-signing keys: bootstrap or recover first",
            ));
        }
        let key = block_on(current.setup_recovery(passphrase))??;
        out_recovery_key.put(give_string(&key));
        Ok(())
    })
}

/// Recover on this device with the recovery key (or passphrase): the
/// cross-signing keys (the device becomes trusted) and every room key in
/// the backup, so history decrypts. Writes how many room keys were restored
/// to `*out_keys` (may be NULL). Errors: `CLOISTER_RESULT_CRYPTO` for a
/// wrong key or an account without recovery set up.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_recovery_restore(
    client: *mut cloister_client,
    recovery_key: *const c_char,
    out_keys: *mut usize,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or writable (the header's contract for out-parameters).
        let out_keys = unsafe { crate::types::opt_out(out_keys) };
        // SAFETY: NULL or a NUL-terminated string that lives through the call.
        let recovery_key = unsafe { arg_str(recovery_key) }?;
        let current = shared.logged_in()?;
        let report = block_on(current.recover(recovery_key))??;
        if let Some(out_keys) = out_keys {
            out_keys.put(report.keys.imported);
        }
        Ok(())
    })
}
