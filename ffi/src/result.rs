//! The one result enum, its texts, and the panic guard every entry point
//! runs in.

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use cloister_sdk::client::ClientError;
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
    /// The homeserver refused the request (see the last error text).
    CLOISTER_RESULT_SERVER_ERROR = 10,
    /// The homeserver does not know the room, event or user (404).
    CLOISTER_RESULT_NOT_FOUND = 11,
    /// The homeserver forbade it: wrong password, not a member… (403).
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
    /// A room id is not of the form `!opaque:server`.
    CLOISTER_RESULT_INVALID_ROOM_ID = 19,
    /// A user id is not of the form `@name:server`.
    CLOISTER_RESULT_INVALID_USER_ID = 20,
    /// The call does not fit the handle's state (e.g. sync already
    /// running, or the event carries no file).
    CLOISTER_RESULT_INVALID_STATE = 21,
    /// A blocking call was made from a library thread (inside a callback).
    CLOISTER_RESULT_WRONG_THREAD = 22,
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
        }
    }

    const ALL: [cloister_result; 23] = [
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

/// An error: its code and the text kept as the handle's last error.
#[derive(Debug)]
pub(crate) struct Error {
    pub code: cloister_result,
    pub message: String,
}

impl Error {
    pub fn new(code: cloister_result, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
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

impl From<ClientError> for Error {
    fn from(error: ClientError) -> Self {
        let code = match &error {
            // To the app an expired event is gone, as the server says too.
            ClientError::Server { status: 404, .. } | ClientError::Expired { .. } => {
                CLOISTER_RESULT_NOT_FOUND
            }
            ClientError::Server {
                status: 401 | 403, ..
            } => CLOISTER_RESULT_FORBIDDEN,
            ClientError::Server { .. } => CLOISTER_RESULT_SERVER_ERROR,
            ClientError::Network { .. } => CLOISTER_RESULT_NETWORK,
            ClientError::InvalidResponse { .. } => CLOISTER_RESULT_INVALID_RESPONSE,
            ClientError::Crypto(_) | ClientError::Attachment(_) => CLOISTER_RESULT_CRYPTO,
            ClientError::Store(StoreError::WrongPassphrase) => CLOISTER_RESULT_WRONG_PASSPHRASE,
            ClientError::Store(StoreError::InUse(_)) => CLOISTER_RESULT_STORE_IN_USE,
            ClientError::Store(_) => CLOISTER_RESULT_STORE_ERROR,
            ClientError::AlreadyLoggedIn(_) => CLOISTER_RESULT_ALREADY_LOGGED_IN,
            ClientError::InvalidArgument(_) => CLOISTER_RESULT_INVALID_ARGUMENT,
        };
        Error::new(code, error.to_string())
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
pub(crate) unsafe fn arg_str<'a>(ptr: *const c_char) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(Error::code(CLOISTER_RESULT_NULL_ARGUMENT));
    }
    CStr::from_ptr(ptr)
        .to_str()
        .map_err(|_| Error::code(CLOISTER_RESULT_INVALID_UTF8))
}

/// An optional UTF-8 string argument (NULL is `None`).
pub(crate) unsafe fn opt_str<'a>(ptr: *const c_char) -> Result<Option<&'a str>> {
    if ptr.is_null() {
        Ok(None)
    } else {
        arg_str(ptr).map(Some)
    }
}

/// `!opaque:server`.
pub(crate) fn check_room_id(room_id: &str) -> Result<()> {
    let ok = room_id
        .strip_prefix('!')
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(local, server)| !local.is_empty() && !server.is_empty());
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            CLOISTER_RESULT_INVALID_ROOM_ID,
            format!("not a room id (!opaque:server): {room_id:?}"),
        ))
    }
}

/// `@name:server`.
pub(crate) fn check_user_id(user_id: &str) -> Result<()> {
    let ok = user_id
        .strip_prefix('@')
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(local, server)| !local.is_empty() && !server.is_empty());
    if ok {
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
        for bad in ["", "abc", "!abc", "!:x", "!a:", "#a:b"] {
            assert_eq!(
                check_room_id(bad).unwrap_err().code,
                CLOISTER_RESULT_INVALID_ROOM_ID
            );
        }
        assert!(check_user_id("@bob:localhost").is_ok());
        assert!(check_user_id("bob").is_err());
    }
}
