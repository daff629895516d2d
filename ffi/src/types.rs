//! Owned values handed to C: strings, byte buffers, string lists.

use std::ffi::{c_char, CString};

use crate::result::{cloister_result, Error, Result};
use crate::result::{guard, guard_value, CLOISTER_RESULT_NULL_ARGUMENT, CLOISTER_RESULT_OK};

/// A string for C: interior NULs (impossible in Matrix ids, possible in
/// message bodies) are dropped.
pub(crate) fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "")).unwrap_or_default()
}

/// Hand out an owned string, freed with `cloister_string_free`.
pub(crate) fn give_string(text: &str) -> *mut c_char {
    c_string(text).into_raw()
}

/// Free a string this library returned through a `char **` out-parameter.
/// NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn cloister_string_free(string: *mut c_char) {
    guard_value((), || {
        if !string.is_null() {
            drop(CString::from_raw(string));
        }
    })
}

/// Owned bytes (a downloaded file). Read with `cloister_buffer_data` and
/// `cloister_buffer_len`; free with `cloister_buffer_free`.
pub struct cloister_buffer {
    data: Vec<u8>,
}

impl cloister_buffer {
    pub(crate) fn new(data: Vec<u8>) -> *mut cloister_buffer {
        Box::into_raw(Box::new(cloister_buffer { data }))
    }
}

/// The buffer's bytes, valid until `cloister_buffer_free`; NULL for a NULL
/// buffer (a non-NULL pointer even when the length is 0).
#[no_mangle]
pub unsafe extern "C" fn cloister_buffer_data(buffer: *const cloister_buffer) -> *const u8 {
    guard_value(std::ptr::null(), || match buffer.as_ref() {
        Some(b) => b.data.as_ptr(),
        None => std::ptr::null(),
    })
}

/// The buffer's length in bytes; 0 for a NULL buffer.
#[no_mangle]
pub unsafe extern "C" fn cloister_buffer_len(buffer: *const cloister_buffer) -> usize {
    guard_value(0, || buffer.as_ref().map_or(0, |b| b.data.len()))
}

/// Free a buffer. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn cloister_buffer_free(buffer: *mut cloister_buffer) {
    guard_value((), || {
        if !buffer.is_null() {
            drop(Box::from_raw(buffer));
        }
    })
}

/// An owned list of strings (room ids, user ids, device ids). Read with
/// `cloister_string_list_len` and `cloister_string_list_get`; free with
/// `cloister_string_list_free`.
pub struct cloister_string_list {
    items: Vec<CString>,
}

impl cloister_string_list {
    pub(crate) fn new<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> *mut Self {
        let items = items.into_iter().map(|s| c_string(s.as_ref())).collect();
        Box::into_raw(Box::new(cloister_string_list { items }))
    }
}

/// How many strings the list holds; 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn cloister_string_list_len(list: *const cloister_string_list) -> usize {
    guard_value(0, || list.as_ref().map_or(0, |l| l.items.len()))
}

/// The string at `index`, borrowed from the list (valid until
/// `cloister_string_list_free`); NULL when out of range or NULL list.
#[no_mangle]
pub unsafe extern "C" fn cloister_string_list_get(
    list: *const cloister_string_list,
    index: usize,
) -> *const c_char {
    guard_value(std::ptr::null(), || {
        list.as_ref()
            .and_then(|l| l.items.get(index))
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// Free a string list. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn cloister_string_list_free(list: *mut cloister_string_list) {
    guard_value((), || {
        if !list.is_null() {
            drop(Box::from_raw(list));
        }
    })
}

/// Write `value` through `out` (already checked non-NULL).
pub(crate) fn write_out<T>(out: *mut T, value: T) -> cloister_result {
    unsafe { out.write(value) };
    CLOISTER_RESULT_OK
}

/// Check an out-parameter before doing any work.
pub(crate) fn need_out<T>(out: *mut T) -> Result<()> {
    if out.is_null() {
        Err(Error::code(CLOISTER_RESULT_NULL_ARGUMENT))
    } else {
        Ok(())
    }
}

/// `guard` for calls without a handle: errors become their code.
pub(crate) fn run(f: impl FnOnce() -> Result<cloister_result>) -> cloister_result {
    guard(|| f().unwrap_or_else(|e| e.code))
}
