//! Owned values handed to C: strings, byte buffers, string lists; and the
//! out-parameters they are handed out through.

use std::ffi::{c_char, CString};
use std::mem::MaybeUninit;

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
/// Its bytes are overwritten first: some (a recovery key) are secrets.
/// NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn cloister_string_free(string: *mut c_char) {
    guard_value((), || {
        if !string.is_null() {
            // SAFETY: not NULL, and by the header's contract a string this
            // library handed out (`CString::into_raw`), freed only once.
            let owned = unsafe { CString::from_raw(string) };
            zeroize::Zeroize::zeroize(&mut owned.into_bytes_with_nul());
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
    // SAFETY: NULL or a live buffer from this library (header contract).
    let buffer = unsafe { buffer.as_ref() };
    guard_value(std::ptr::null(), || {
        buffer.map_or(std::ptr::null(), |b| b.data.as_ptr())
    })
}

/// The buffer's length in bytes; 0 for a NULL buffer.
#[no_mangle]
pub unsafe extern "C" fn cloister_buffer_len(buffer: *const cloister_buffer) -> usize {
    // SAFETY: NULL or a live buffer from this library (header contract).
    let buffer = unsafe { buffer.as_ref() };
    guard_value(0, || buffer.map_or(0, |b| b.data.len()))
}

/// Free a buffer. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn cloister_buffer_free(buffer: *mut cloister_buffer) {
    guard_value((), || {
        if !buffer.is_null() {
            // SAFETY: not NULL, and by the header's contract a buffer this
            // library handed out (`Box::into_raw`), freed only once.
            drop(unsafe { Box::from_raw(buffer) });
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
    // SAFETY: NULL or a live list from this library (header contract).
    let list = unsafe { list.as_ref() };
    guard_value(0, || list.map_or(0, |l| l.items.len()))
}

/// The string at `index`, borrowed from the list (valid until
/// `cloister_string_list_free`); NULL when out of range or NULL list.
#[no_mangle]
pub unsafe extern "C" fn cloister_string_list_get(
    list: *const cloister_string_list,
    index: usize,
) -> *const c_char {
    // SAFETY: NULL or a live list from this library (header contract).
    let list = unsafe { list.as_ref() };
    guard_value(std::ptr::null(), || {
        list.and_then(|l| l.items.get(index))
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// Free a string list. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn cloister_string_list_free(list: *mut cloister_string_list) {
    guard_value((), || {
        if !list.is_null() {
            // SAFETY: not NULL, and by the header's contract a list this
            // library handed out (`Box::into_raw`), freed only once.
            drop(unsafe { Box::from_raw(list) });
        }
    })
}

/// An out-parameter checked at the boundary: the caller's variable, written
/// at most once, only on success.
pub(crate) struct Out<'a, T>(&'a mut MaybeUninit<T>);

impl<T> Out<'_, T> {
    /// Write the value (the previous one, the caller's, is not dropped).
    pub(crate) fn put(self, value: T) -> cloister_result {
        self.0.write(value);
        CLOISTER_RESULT_OK
    }
}

/// A required out-parameter: `CLOISTER_RESULT_NULL_ARGUMENT` when NULL.
///
/// # Safety
///
/// `ptr` is NULL or valid for writes of a `T` and properly aligned, for
/// `'a` (the header's contract for out-parameters).
pub(crate) unsafe fn out<'a, T>(ptr: *mut T) -> Result<Out<'a, T>> {
    // SAFETY: this function's contract; `MaybeUninit` makes no claim about
    // what the caller's variable holds now.
    unsafe { opt_out(ptr) }.ok_or_else(|| Error::code(CLOISTER_RESULT_NULL_ARGUMENT))
}

/// An optional out-parameter (NULL: the caller does not want the value).
///
/// # Safety
///
/// As for [`out`].
pub(crate) unsafe fn opt_out<'a, T>(ptr: *mut T) -> Option<Out<'a, T>> {
    // SAFETY: NULL or valid for writes and aligned (this function's
    // contract); `MaybeUninit<T>` has `T`'s layout and any content is valid.
    unsafe { ptr.cast::<MaybeUninit<T>>().as_mut() }.map(Out)
}

/// `guard` for calls without a handle: errors become their code.
pub(crate) fn run(f: impl FnOnce() -> Result<cloister_result>) -> cloister_result {
    guard(|| f().unwrap_or_else(|e| e.code))
}
