//! The one result enum, its texts, and the panic guard every entry point
//! runs in.

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use cloister_proto::ErrCode;
use cloister_sdk::client::ClientError;
use cloister_sdk::crypto::CryptoError;
use cloister_sdk::store::StoreError;

/// What every fallible call returns. `CLOISTER_RESULT_OK` is 0; the values
/// are stable and never reused. In C the type is a `uint32_t`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cloister_result {
    /// Success; out-parameters were written.
    CLOISTER_RESULT_OK = 0,
    /// A required pointer argument was NULL.
    CLOISTER_RESULT_NULL_ARGUMENT = 1,
    /// A string argument was not valid UTF-8.
    CLOISTER_RESULT_INVALID_UTF8 = 2,
    /// An argument was out of range or malformed.
    CLOISTER_RESULT_INVALID_ARGUMENT = 3,
    /// The library panicked (a bug); the handle may be in an odd state.
    CLOISTER_RESULT_PANIC = 4,
    /// The handle was closed with `cloister_client_close`.
    CLOISTER_RESULT_CLOSED = 5,
    /// The passphrase does not unlock the store.
    CLOISTER_RESULT_WRONG_PASSPHRASE = 6,
    /// Another handle or process has the store open.
    CLOISTER_RESULT_STORE_IN_USE = 7,
    /// The store could not be read or written (database, corruption).
    CLOISTER_RESULT_STORE_ERROR = 8,
    /// The homeserver could not be reached.
    CLOISTER_RESULT_NETWORK = 9,
    /// The homeserver refused the request for another reason than the
    /// codes below (see the last error text, which holds its `errcode`).
    CLOISTER_RESULT_SERVER_ERROR = 10,
    /// The homeserver does not know the room, event or user (`M_NOT_FOUND`,
    /// or HTTP 404 without a known code), or the event has expired under
    /// the room's retention policy.
    CLOISTER_RESULT_NOT_FOUND = 11,
    /// The homeserver forbade it: wrong password, not a member, account
    /// locked or deactivated (`M_FORBIDDEN`…, or HTTP 401/403 without a
    /// known code). A revoked session is `CLOISTER_RESULT_UNKNOWN_TOKEN`.
    CLOISTER_RESULT_FORBIDDEN = 12,
    /// The call needs a logged-in client.
    CLOISTER_RESULT_NOT_LOGGED_IN = 13,
    /// The store already holds a session: log out first.
    CLOISTER_RESULT_ALREADY_LOGGED_IN = 14,
    /// End-to-end encryption failed.
    CLOISTER_RESULT_CRYPTO = 15,
    /// `cloister_client_next_event` found no event within its timeout.
    CLOISTER_RESULT_TIMEOUT = 16,
    /// The homeserver's answer was malformed.
    CLOISTER_RESULT_INVALID_RESPONSE = 17,
    /// A local file could not be read or written.
    CLOISTER_RESULT_IO = 18,
    /// A room id is neither `!opaque:server` nor `!opaque` (room version 12
    /// ids have no server part); checked before anything is sent.
    CLOISTER_RESULT_INVALID_ROOM_ID = 19,
    /// A user id is not of the form `@name:server`.
    CLOISTER_RESULT_INVALID_USER_ID = 20,
    /// The call does not fit the handle's state (e.g. sync already
    /// running, or the event carries no file).
    CLOISTER_RESULT_INVALID_STATE = 21,
    /// A blocking call was made from a library thread (inside a callback).
    CLOISTER_RESULT_WRONG_THREAD = 22,
    /// The homeserver no longer accepts this session (`M_UNKNOWN_TOKEN`):
    /// it was logged out from another device, revoked by an administrator,
    /// or expired. Sign in again: `cloister_client_logout` (which then only
    /// wipes the store) and `cloister_client_login`. This library cannot
    /// resume a device, so even a "soft" logout does not keep the keys: the
    /// new login is a new device, and messages only the old one could
    /// decrypt stay unreadable on it.
    CLOISTER_RESULT_UNKNOWN_TOKEN = 23,
    /// The homeserver is rate-limiting this client (`M_LIMIT_EXCEEDED`, HTTP
    /// 429) and asked for a longer pause than the library waits out by
    /// itself (30 s). Retry after `cloister_client_last_retry_after_ms`.
    CLOISTER_RESULT_LIMIT_EXCEEDED = 24,
}

pub use cloister_result::*;

impl cloister_result {
    fn text(self) -> &'static str {
        match self {
            CLOISTER_RESULT_OK => "ok\0",
            CLOISTER_RESULT_NULL_ARGUMENT => "a required argument was NULL\0",
            CLOISTER_RESULT_INVALID_UTF8 => "a string argument was not valid UTF-8\0",
            CLOISTER_RESULT_INVALID_ARGUMENT => "invalid argument\0",
            CLOISTER_RESULT_PANIC => "internal error (panic) in the library\0",
            CLOISTER_RESULT_CLOSED => "the handle is closed\0",
            CLOISTER_RESULT_WRONG_PASSPHRASE => "wrong passphrase for the store\0",
            CLOISTER_RESULT_STORE_IN_USE => "the store is in use by another handle or process\0",
            CLOISTER_RESULT_STORE_ERROR => "store error\0",
            CLOISTER_RESULT_NETWORK => "the homeserver could not be reached\0",
            CLOISTER_RESULT_SERVER_ERROR => "the homeserver refused the request\0",
            CLOISTER_RESULT_NOT_FOUND => "not found\0",
            CLOISTER_RESULT_FORBIDDEN => "forbidden\0",
            CLOISTER_RESULT_NOT_LOGGED_IN => "the client is not logged in\0",
            CLOISTER_RESULT_ALREADY_LOGGED_IN => "the store already holds a session\0",
            CLOISTER_RESULT_CRYPTO => "end-to-end encryption error\0",
            CLOISTER_RESULT_TIMEOUT => "timed out\0",
            CLOISTER_RESULT_INVALID_RESPONSE => "malformed answer from the homeserver\0",
            CLOISTER_RESULT_IO => "file I/O error\0",
            CLOISTER_RESULT_INVALID_ROOM_ID => "invalid room id\0",
            CLOISTER_RESULT_INVALID_USER_ID => "invalid user id\0",
            CLOISTER_RESULT_INVALID_STATE => "the call does not fit the handle's state\0",
            CLOISTER_RESULT_WRONG_THREAD => "blocking call from a library thread (callback)\0",
            CLOISTER_RESULT_UNKNOWN_TOKEN => "the session was revoked or expired: sign in again\0",
            CLOISTER_RESULT_LIMIT_EXCEEDED => "rate limited by the homeserver: retry later\0",
        }
    }

    const ALL: [cloister_result; 25] = [
        CLOISTER_RESULT_OK,
        CLOISTER_RESULT_NULL_ARGUMENT,
        CLOISTER_RESULT_INVALID_UTF8,
        CLOISTER_RESULT_INVALID_ARGUMENT,
        CLOISTER_RESULT_PANIC,
        CLOISTER_RESULT_CLOSED,
        CLOISTER_RESULT_WRONG_PASSPHRASE,
        CLOISTER_RESULT_STORE_IN_USE,
        CLOISTER_RESULT_STORE_ERROR,
        CLOISTER_RESULT_NETWORK,
        CLOISTER_RESULT_SERVER_ERROR,
        CLOISTER_RESULT_NOT_FOUND,
        CLOISTER_RESULT_FORBIDDEN,
        CLOISTER_RESULT_NOT_LOGGED_IN,
        CLOISTER_RESULT_ALREADY_LOGGED_IN,
        CLOISTER_RESULT_CRYPTO,
        CLOISTER_RESULT_TIMEOUT,
        CLOISTER_RESULT_INVALID_RESPONSE,
        CLOISTER_RESULT_IO,
        CLOISTER_RESULT_INVALID_ROOM_ID,
        CLOISTER_RESULT_INVALID_USER_ID,
        CLOISTER_RESULT_INVALID_STATE,
        CLOISTER_RESULT_WRONG_THREAD,
        CLOISTER_RESULT_UNKNOWN_TOKEN,
        CLOISTER_RESULT_LIMIT_EXCEEDED,
    ];
}

/// A static, NUL-terminated English text for a result code (any value:
/// unknown codes give "unknown result code"). Never free it.
#[no_mangle]
pub extern "C" fn cloister_result_str(code: u32) -> *const c_char {
    let text = cloister_result::ALL
        .iter()
        .find(|r| **r as u32 == code)
        .map(|r| r.text())
        .unwrap_or("unknown result code\0");
    text.as_ptr().cast()
}

/// An error: its code, and the text and retry delay kept as the handle's
/// last error.
#[derive(Debug)]
pub(crate) struct Error {
    pub code: cloister_result,
    pub message: String,
    /// The server's `retry_after_ms` (0: none).
    pub retry_after_ms: u64,
}

impl Error {
    pub fn new(code: cloister_result, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: 0,
        }
    }

    pub fn code(code: cloister_result) -> Self {
        let text = code.text();
        Self::new(code, &text[..text.len() - 1])
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        let code = match error {
            StoreError::WrongPassphrase => CLOISTER_RESULT_WRONG_PASSPHRASE,
            StoreError::InUse(_) => CLOISTER_RESULT_STORE_IN_USE,
            StoreError::Io(_) => CLOISTER_RESULT_IO,
            _ => CLOISTER_RESULT_STORE_ERROR,
        };
        Error::new(code, error.to_string())
    }
}

/// The result for a Matrix error code. Exhaustive on purpose: a code added
/// to `cloister_proto::ErrCode` does not compile until it is placed here.
fn errcode_result(code: ErrCode, status: u16) -> cloister_result {
    match code {
        ErrCode::UnknownToken => CLOISTER_RESULT_UNKNOWN_TOKEN,
        ErrCode::LimitExceeded => CLOISTER_RESULT_LIMIT_EXCEEDED,
        ErrCode::NotFound => CLOISTER_RESULT_NOT_FOUND,
        // Signing in again would not help with these; the text says which.
        ErrCode::Forbidden
        | ErrCode::MissingToken
        | ErrCode::UserLocked
        | ErrCode::UserDeactivated
        | ErrCode::Unauthorized
        | ErrCode::GuestAccessForbidden => CLOISTER_RESULT_FORBIDDEN,
        // Used both for bad requests and server faults: the status decides.
        ErrCode::Unknown => status_result(status),
        // The server does not support the request (an older server), or
        // refused something the library built: nothing the app's arguments
        // could fix.
        ErrCode::Unrecognized
        | ErrCode::BadJson
        | ErrCode::NotJson
        | ErrCode::UserInUse
        | ErrCode::InvalidUsername
        | ErrCode::RoomInUse
        | ErrCode::InvalidRoomState
        | ErrCode::UnsupportedRoomVersion
        | ErrCode::BadState
        | ErrCode::MissingParam
        | ErrCode::InvalidParam
        | ErrCode::TooLarge
        | ErrCode::Exclusive
        | ErrCode::WeakPassword
        | ErrCode::InvalidSignature
        | ErrCode::WrongRoomKeysVersion
        | ErrCode::UnknownPos
        | ErrCode::NotYetUploaded
        | ErrCode::CannotOverwriteMedia => CLOISTER_RESULT_SERVER_ERROR,
    }
}

/// The result for an error without a known code (a proxy's error page, a
/// server's own `ORG_…` code), by HTTP status.
fn status_result(status: u16) -> cloister_result {
    match status {
        401 | 403 => CLOISTER_RESULT_FORBIDDEN,
        404 => CLOISTER_RESULT_NOT_FOUND,
        429 => CLOISTER_RESULT_LIMIT_EXCEEDED,
        _ => CLOISTER_RESULT_SERVER_ERROR,
    }
}

impl From<ClientError> for Error {
    fn from(error: ClientError) -> Self {
        let code = match &error {
            ClientError::Server { status, .. } => match error.code() {
                Some(code) => errcode_result(code, *status),
                None => status_result(*status),
            },
            // To the app an expired event is gone, as the server says too.
            ClientError::Expired { .. } => CLOISTER_RESULT_NOT_FOUND,
            ClientError::Network { .. } => CLOISTER_RESULT_NETWORK,
            ClientError::InvalidResponse { .. } => CLOISTER_RESULT_INVALID_RESPONSE,
            // A verification or cross-signing step at the wrong moment.
            ClientError::Crypto(
                CryptoError::Verification { .. } | CryptoError::CrossSigning(_),
            ) => CLOISTER_RESULT_INVALID_STATE,
            ClientError::Crypto(_) | ClientError::Attachment(_) => CLOISTER_RESULT_CRYPTO,
            ClientError::Store(StoreError::WrongPassphrase) => CLOISTER_RESULT_WRONG_PASSPHRASE,
            ClientError::Store(StoreError::InUse(_)) => CLOISTER_RESULT_STORE_IN_USE,
            ClientError::Store(_) => CLOISTER_RESULT_STORE_ERROR,
            ClientError::AlreadyLoggedIn(_) => CLOISTER_RESULT_ALREADY_LOGGED_IN,
            ClientError::InvalidArgument(_) => CLOISTER_RESULT_INVALID_ARGUMENT,
        };
        Error {
            code,
            message: error.to_string(),
            retry_after_ms: error.retry_after_ms().unwrap_or(0),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Error::new(CLOISTER_RESULT_IO, error.to_string())
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Run `f`, turning a panic into `CLOISTER_RESULT_PANIC`.
pub(crate) fn guard(f: impl FnOnce() -> cloister_result) -> cloister_result {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(CLOISTER_RESULT_PANIC)
}

/// Run `f` for a value; a panic gives `fallback`.
pub(crate) fn guard_value<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// A required UTF-8 string argument.
///
/// # Safety
///
/// `ptr` is NULL or points to a NUL-terminated string that stays valid and
/// unchanged for `'a` (the header's contract for `const char *` inputs).
pub(crate) unsafe fn arg_str<'a>(ptr: *const c_char) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(Error::code(CLOISTER_RESULT_NULL_ARGUMENT));
    }
    // SAFETY: not NULL (checked above); NUL-terminated and live for 'a by
    // this function's contract.
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|_| Error::code(CLOISTER_RESULT_INVALID_UTF8))
}

/// An optional UTF-8 string argument (NULL is `None`).
///
/// # Safety
///
/// As for [`arg_str`].
pub(crate) unsafe fn opt_str<'a>(ptr: *const c_char) -> Result<Option<&'a str>> {
    if ptr.is_null() {
        Ok(None)
    } else {
        // SAFETY: this function's contract is `arg_str`'s.
        unsafe { arg_str(ptr) }.map(Some)
    }
}

/// `!opaque:server`, or `!opaque` (room version 12), as cloister-proto
/// reads room ids: the same rule as the SDK and the server.
pub(crate) fn check_room_id(room_id: &str) -> Result<()> {
    if cloister_proto::ids::is_valid_room_id(room_id) {
        Ok(())
    } else {
        Err(Error::new(
            CLOISTER_RESULT_INVALID_ROOM_ID,
            format!("not a room id (!opaque:server or !opaque): {room_id:?}"),
        ))
    }
}

/// `@name:server`, as cloister-proto reads user ids.
pub(crate) fn check_user_id(user_id: &str) -> Result<()> {
    if cloister_proto::ids::parse_user_id(user_id).is_some() {
        Ok(())
    } else {
        Err(Error::new(
            CLOISTER_RESULT_INVALID_USER_ID,
            format!("not a user id (@name:server): {user_id:?}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_text_and_unknown_codes_are_safe() {
        for (i, code) in cloister_result::ALL.iter().enumerate() {
            assert_eq!(*code as u32, i as u32, "values are dense and stable");
            assert!(code.text().ends_with('\0'));
        }
        // SAFETY: cloister_result_str returns a static NUL-terminated text.
        let unknown = unsafe { CStr::from_ptr(cloister_result_str(9999)) };
        assert_eq!(unknown.to_str().unwrap(), "unknown result code");
    }

    #[test]
    fn a_panic_becomes_the_panic_code() {
        assert_eq!(guard(|| panic!("boom")), CLOISTER_RESULT_PANIC);
        assert_eq!(guard_value(7, || panic!("boom")), 7);
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_room_id("!abc:localhost").is_ok());
        for bad in ["", "abc", "!", "!:x", "!a:", "#a:b", "!a:bad host"] {
            assert_eq!(
                check_room_id(bad).unwrap_err().code,
                CLOISTER_RESULT_INVALID_ROOM_ID
            );
        }
        assert!(check_user_id("@bob:localhost").is_ok());
        assert!(check_user_id("@bob:[::1]:8008").is_ok());
        for bad in ["bob", "@bob", "@:localhost", "@b ob:localhost"] {
            assert_eq!(
                check_user_id(bad).unwrap_err().code,
                CLOISTER_RESULT_INVALID_USER_ID
            );
        }
    }

    /// Room version 12 ids have no server part; the SDK joins such rooms,
    /// so the C API must accept them too.
    #[test]
    fn room_version_12_ids_pass_the_argument_check() {
        for v12 in [
            "!abcdefghijklmnop",
            "!31hneApxJ_1o-63DmFrpeqnkFfWppnzWso1JvH3ogLM",
        ] {
            assert!(check_room_id(v12).is_ok(), "{v12}");
            assert!(cloister_sdk::cloister_proto::ids::is_valid_room_id(v12));
        }
    }

    fn server_error(status: u16, body: &str) -> ClientError {
        let parsed: cloister_proto::MatrixError = serde_json::from_str(body).unwrap();
        ClientError::Server {
            method: "GET".into(),
            path: "/_matrix/client/v3/sync".into(),
            status,
            errcode: parsed.errcode,
            error: parsed.error,
            retry_after_ms: parsed.retry_after_ms,
            soft_logout: parsed.soft_logout.unwrap_or(false),
        }
    }

    #[test]
    fn server_errors_map_by_errcode_first() {
        let revoked = Error::from(server_error(
            401,
            r#"{"errcode":"M_UNKNOWN_TOKEN","error":"Unrecognised access token","soft_logout":false}"#,
        ));
        assert_eq!(revoked.code, CLOISTER_RESULT_UNKNOWN_TOKEN);
        assert!(
            revoked.message.contains("M_UNKNOWN_TOKEN"),
            "{}",
            revoked.message
        );
        assert_eq!(revoked.retry_after_ms, 0);

        let limited = Error::from(server_error(
            429,
            r#"{"errcode":"M_LIMIT_EXCEEDED","error":"Too many requests","retry_after_ms":45000}"#,
        ));
        assert_eq!(limited.code, CLOISTER_RESULT_LIMIT_EXCEEDED);
        assert_eq!(limited.retry_after_ms, 45000);

        // Same status, different meaning: the code decides.
        let forbidden = Error::from(server_error(401, r#"{"errcode":"M_FORBIDDEN"}"#));
        assert_eq!(forbidden.code, CLOISTER_RESULT_FORBIDDEN);
        let unsupported = Error::from(server_error(404, r#"{"errcode":"M_UNRECOGNIZED"}"#));
        assert_eq!(unsupported.code, CLOISTER_RESULT_SERVER_ERROR);
        let missing = Error::from(server_error(404, r#"{"errcode":"M_NOT_FOUND"}"#));
        assert_eq!(missing.code, CLOISTER_RESULT_NOT_FOUND);
        let unknown_400 = Error::from(server_error(400, r#"{"errcode":"M_UNKNOWN"}"#));
        assert_eq!(unknown_400.code, CLOISTER_RESULT_SERVER_ERROR);
    }

    #[test]
    fn unknown_codes_map_by_status() {
        for (status, want) in [
            (401, CLOISTER_RESULT_FORBIDDEN),
            (403, CLOISTER_RESULT_FORBIDDEN),
            (404, CLOISTER_RESULT_NOT_FOUND),
            (429, CLOISTER_RESULT_LIMIT_EXCEEDED),
            (500, CLOISTER_RESULT_SERVER_ERROR),
            (502, CLOISTER_RESULT_SERVER_ERROR),
        ] {
            let error = Error::from(server_error(status, r#"{"errcode":"ORG_EXAMPLE_X"}"#));
            assert_eq!(error.code, want, "HTTP {status}");
            let error = Error::from(server_error(status, r#"{"errcode":""}"#));
            assert_eq!(error.code, want, "HTTP {status} without a code");
        }
        let expired = Error::from(ClientError::Expired {
            room_id: "!r".into(),
            event_id: "$e".into(),
        });
        assert_eq!(expired.code, CLOISTER_RESULT_NOT_FOUND);
    }

    /// Every code cloister-proto knows has a decision (the match is
    /// exhaustive); the two that need the app's action have their own.
    #[test]
    fn every_errcode_has_a_result() {
        for code in ErrCode::ALL {
            let result = errcode_result(*code, code.status());
            assert_ne!(result, CLOISTER_RESULT_OK, "{code}");
            let own = matches!(code, ErrCode::UnknownToken | ErrCode::LimitExceeded);
            assert_eq!(
                own,
                matches!(
                    result,
                    CLOISTER_RESULT_UNKNOWN_TOKEN | CLOISTER_RESULT_LIMIT_EXCEEDED
                ),
                "{code}"
            );
        }
    }
}
