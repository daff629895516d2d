//! Matrix error codes (spec: "Standard error response"), each with the HTTP
//! status the spec pairs it with, and the error body both sides exchange.

use serde::{Deserialize, Serialize};

macro_rules! errcodes {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $status:literal;)+) => {
        /// A Matrix `errcode`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrCode {
            $($(#[$doc])* #[doc = concat!("`", $code, "`, HTTP ", stringify!($status), ".")] $name,)+
        }

        impl ErrCode {
            /// Every code, for tables and tests.
            pub const ALL: &'static [ErrCode] = &[$(ErrCode::$name,)+];

            /// The wire spelling, `M_…`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrCode::$name => $code,)+
                }
            }

            /// The HTTP status the spec gives this error. A few codes are
            /// used with more than one status (`M_UNKNOWN` for a bad request
            /// and for a server fault); this is the usual one.
            pub fn status(self) -> u16 {
                match self {
                    $(ErrCode::$name => $status,)+
                }
            }

            /// The code for a wire spelling; `None` for codes this crate
            /// does not know (servers may send their own `ORG_…` codes).
            pub fn parse(code: &str) -> Option<ErrCode> {
                match code {
                    $($code => Some(ErrCode::$name),)+
                    _ => None,
                }
            }
        }
    };
}

errcodes! {
    /// Not allowed: not a member, power level too low, wrong password.
    Forbidden = "M_FORBIDDEN", 403;
    /// The access token is unknown, revoked or expired: sign in again
    /// (softly, keeping keys, when `soft_logout` is true).
    UnknownToken = "M_UNKNOWN_TOKEN", 401;
    MissingToken = "M_MISSING_TOKEN", 401;
    UserLocked = "M_USER_LOCKED", 401;
    UserDeactivated = "M_USER_DEACTIVATED", 403;
    BadJson = "M_BAD_JSON", 400;
    NotJson = "M_NOT_JSON", 400;
    NotFound = "M_NOT_FOUND", 404;
    /// Too many requests; `retry_after_ms` says when to try again.
    LimitExceeded = "M_LIMIT_EXCEEDED", 429;
    Unrecognized = "M_UNRECOGNIZED", 404;
    Unknown = "M_UNKNOWN", 400;
    Unauthorized = "M_UNAUTHORIZED", 401;
    UserInUse = "M_USER_IN_USE", 400;
    InvalidUsername = "M_INVALID_USERNAME", 400;
    RoomInUse = "M_ROOM_IN_USE", 400;
    InvalidRoomState = "M_INVALID_ROOM_STATE", 400;
    UnsupportedRoomVersion = "M_UNSUPPORTED_ROOM_VERSION", 400;
    BadState = "M_BAD_STATE", 400;
    GuestAccessForbidden = "M_GUEST_ACCESS_FORBIDDEN", 403;
    MissingParam = "M_MISSING_PARAM", 400;
    InvalidParam = "M_INVALID_PARAM", 400;
    TooLarge = "M_TOO_LARGE", 413;
    Exclusive = "M_EXCLUSIVE", 400;
    WeakPassword = "M_WEAK_PASSWORD", 400;
    InvalidSignature = "M_INVALID_SIGNATURE", 400;
    WrongRoomKeysVersion = "M_WRONG_ROOM_KEYS_VERSION", 403;
    /// Sliding sync: the `pos` is unknown or expired; start over.
    UnknownPos = "M_UNKNOWN_POS", 400;
    NotYetUploaded = "M_NOT_YET_UPLOADED", 504;
    CannotOverwriteMedia = "M_CANNOT_OVERWRITE_MEDIA", 409;
}

impl std::fmt::Display for ErrCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// So a test can say `assert_eq!(err.errcode, "M_FORBIDDEN")`.
impl PartialEq<&str> for ErrCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for ErrCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The error body of a failed request, as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixError {
    /// The `M_…` code; kept as a string, since servers may send their own.
    pub errcode: String,
    /// A human-readable message.
    #[serde(default)]
    pub error: String,
    /// With `M_LIMIT_EXCEEDED`: how long to wait before retrying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// With `M_UNKNOWN_TOKEN`: whether the client may sign in again
    /// without discarding its keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_logout: Option<bool>,
}

impl MatrixError {
    /// The code, when it is one this crate knows.
    pub fn code(&self) -> Option<ErrCode> {
        ErrCode::parse(&self.errcode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip_and_statuses_follow_the_spec() {
        for code in ErrCode::ALL {
            assert_eq!(ErrCode::parse(code.as_str()), Some(*code));
            assert!(code.as_str().starts_with("M_"));
            assert!((400..600).contains(&code.status()));
        }
        assert_eq!(ErrCode::UnknownToken.status(), 401);
        assert_eq!(ErrCode::LimitExceeded.status(), 429);
        assert_eq!(ErrCode::TooLarge.status(), 413);
        assert_eq!(ErrCode::parse("ORG_EXAMPLE"), None);
    }

    #[test]
    fn error_bodies_parse_with_their_extras() {
        let e: MatrixError = serde_json::from_str(
            r#"{"errcode":"M_LIMIT_EXCEEDED","error":"slow down","retry_after_ms":1500}"#,
        )
        .unwrap();
        assert_eq!(e.code(), Some(ErrCode::LimitExceeded));
        assert_eq!(e.retry_after_ms, Some(1500));
        let e: MatrixError =
            serde_json::from_str(r#"{"errcode":"M_UNKNOWN_TOKEN","soft_logout":true}"#).unwrap();
        assert_eq!(
            (e.code(), e.soft_logout),
            (Some(ErrCode::UnknownToken), Some(true))
        );
    }
}
