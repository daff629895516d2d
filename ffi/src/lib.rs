//! Cloister's C ABI: the client SDK as a C library (`libcloister`) for iOS,
//! Android and desktop apps. The header `include/cloister.h` is generated
//! from this crate by cbindgen; see `docs/ffi.md` for the rules.
//!
//! Conventions (rustls-ffi style): opaque handles, one [`cloister_result`]
//! enum with stable values, `cloister_<object>_<verb>` names, outputs
//! written through out-parameters only on success, one free function per
//! allocation (freeing NULL is a no-op), every entry point inside
//! `catch_unwind`.

// Every unsafe operation sits in its own `unsafe` block, with a `SAFETY:`
// comment saying why it holds; raw pointers are turned into references or
// `&str` once, where they enter.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]
// The C names are the API.
#![allow(non_camel_case_types)]
// cbindgen writes the header from `pub` items, wherever their module is.
#![allow(unreachable_pub)]
// Every `extern "C"` function checks its pointers for NULL; the remaining
// contract (valid, live pointers) is documented in the header.
#![allow(clippy::missing_safety_doc)]

mod client;
mod devices;
mod event;
mod log;
mod messages;
mod result;
mod runtime;
mod sync;
mod types;
mod verification;

pub use client::*;
pub use devices::*;
pub use event::*;
pub use log::*;
pub use messages::*;
pub use result::*;
pub use sync::*;
pub use types::*;
pub use verification::*;

use std::ffi::c_char;

/// Major version of the header (and the library it was generated with).
pub const CLOISTER_VERSION_MAJOR: u32 = 0;
/// Minor version.
pub const CLOISTER_VERSION_MINOR: u32 = 1;
/// Patch version.
pub const CLOISTER_VERSION_PATCH: u32 = 0;
/// `MAJOR * 10000 + MINOR * 100 + PATCH`; compare with
/// `cloister_version_number()` at run time.
pub const CLOISTER_VERSION_NUMBER: u32 =
    CLOISTER_VERSION_MAJOR * 10000 + CLOISTER_VERSION_MINOR * 100 + CLOISTER_VERSION_PATCH;

/// The library version as a static NUL-terminated string, e.g. "0.1.0".
/// Never free it.
#[no_mangle]
pub extern "C" fn cloister_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The library version as one number: `MAJOR * 10000 + MINOR * 100 +
/// PATCH`, the same formula as the `CLOISTER_VERSION_NUMBER` macro, so an
/// app can check that the header it was built with matches the library.
#[no_mangle]
pub extern "C" fn cloister_version_number() -> u32 {
    version_number()
}

fn version_number() -> u32 {
    let part = |s: &str| s.parse::<u32>().unwrap_or(0);
    part(env!("CARGO_PKG_VERSION_MAJOR")) * 10000
        + part(env!("CARGO_PKG_VERSION_MINOR")) * 100
        + part(env!("CARGO_PKG_VERSION_PATCH"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn version_string_and_number_agree() {
        // SAFETY: cloister_version returns a static NUL-terminated string.
        let text = unsafe { CStr::from_ptr(cloister_version()) }
            .to_str()
            .unwrap();
        assert_eq!(text, env!("CARGO_PKG_VERSION"));
        let parts: Vec<u32> = text.split('.').map(|p| p.parse().unwrap()).collect();
        assert_eq!(
            cloister_version_number(),
            parts[0] * 10000 + parts[1] * 100 + parts[2]
        );
    }

    #[test]
    fn version_constants_match_the_crate() {
        let crate_part = |s: &str| s.parse::<u32>().unwrap();
        assert_eq!(
            CLOISTER_VERSION_MAJOR,
            crate_part(env!("CARGO_PKG_VERSION_MAJOR"))
        );
        assert_eq!(
            CLOISTER_VERSION_MINOR,
            crate_part(env!("CARGO_PKG_VERSION_MINOR"))
        );
        assert_eq!(
            CLOISTER_VERSION_PATCH,
            crate_part(env!("CARGO_PKG_VERSION_PATCH"))
        );
        assert_eq!(CLOISTER_VERSION_NUMBER, version_number());
        // Each part in its own place (rustls-ffi once used MINOR twice).
        assert_eq!(CLOISTER_VERSION_NUMBER, 100);
    }

    #[test]
    fn header_version_macros_match_the_crate() {
        let header = include_str!("../include/cloister.h");
        let mac = |name: &str| -> u32 {
            let line = header
                .lines()
                .find(|l| l.starts_with(&format!("#define {name} ")))
                .unwrap_or_else(|| panic!("{name} missing from the header"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert_eq!(
            mac("CLOISTER_VERSION_MAJOR"),
            env!("CARGO_PKG_VERSION_MAJOR").parse::<u32>().unwrap()
        );
        assert_eq!(
            mac("CLOISTER_VERSION_MINOR"),
            env!("CARGO_PKG_VERSION_MINOR").parse::<u32>().unwrap()
        );
        assert_eq!(
            mac("CLOISTER_VERSION_PATCH"),
            env!("CARGO_PKG_VERSION_PATCH").parse::<u32>().unwrap()
        );
    }
}
