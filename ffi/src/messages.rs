//! Sending text and files, downloading attachments, history, devices.

use std::ffi::c_char;
use std::path::Path;

use cloister_sdk::client::Direction;

use crate::client::{cloister_client, with_client, Shared};
use crate::event::{cloister_event, cloister_event_list};
use crate::result::*;
use crate::runtime::block_on;
use crate::types::{cloister_buffer, cloister_string_list, give_string, opt_out, out, Out};

const DEFAULT_MIMETYPE: &str = "application/octet-stream";

/// Hand the new event's id out, if the caller wants it.
fn give_event_id(out: Option<Out<'_, *mut c_char>>, event_id: &str) {
    if let Some(out) = out {
        out.put(give_string(event_id));
    }
}

/// Send an end-to-end encrypted text message. The event id is written to
/// `*out_event_id` unless it is NULL (free with `cloister_string_free`).
#[no_mangle]
pub unsafe extern "C" fn cloister_client_send_text(
    client: *mut cloister_client,
    room_id: *const c_char,
    body: *const c_char,
    out_event_id: *mut *mut c_char,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or NUL-terminated strings that live through the call.
        let (room_id, body) = unsafe { (arg_str(room_id)?, arg_str(body)?) };
        // SAFETY: NULL (not wanted) or writable (header contract).
        let out_event_id = unsafe { opt_out(out_event_id) };
        check_room_id(room_id)?;
        let current = shared.logged_in()?;
        let event_id = block_on(current.send_text(room_id, body))??;
        give_event_id(out_event_id, &event_id);
        Ok(())
    })
}

/// Encrypt `len` bytes at `data` (NULL only when `len` is 0), upload them
/// and send an encrypted file message named `file_name` with `mimetype`
/// (NULL: "application/octet-stream"; "image/…" sends an image). The event
/// id is written to `*out_event_id` unless it is NULL.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_send_file_buffer(
    client: *mut cloister_client,
    room_id: *const c_char,
    file_name: *const c_char,
    mimetype: *const c_char,
    data: *const u8,
    len: usize,
    out_event_id: *mut *mut c_char,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or NUL-terminated strings that live through the call.
        let (room_id, file_name, mimetype) =
            unsafe { (arg_str(room_id)?, arg_str(file_name)?, opt_str(mimetype)?) };
        let mimetype = mimetype.unwrap_or(DEFAULT_MIMETYPE);
        // SAFETY: NULL (not wanted) or writable (header contract).
        let out_event_id = unsafe { opt_out(out_event_id) };
        check_room_id(room_id)?;
        let bytes: &[u8] = if len == 0 {
            &[]
        } else if data.is_null() {
            return Err(Error::code(CLOISTER_RESULT_NULL_ARGUMENT));
        } else {
            // SAFETY: not NULL; by the header's contract `len` readable
            // bytes that stay unchanged through the call.
            unsafe { std::slice::from_raw_parts(data, len) }
        };
        let current = shared.logged_in()?;
        let event_id = block_on(current.send_file(room_id, file_name, mimetype, bytes))??;
        give_event_id(out_event_id, &event_id);
        Ok(())
    })
}

/// Like `cloister_client_send_file_buffer` with the contents of the file
/// at `path`, named after its last path component.
/// `CLOISTER_RESULT_IO` if it cannot be read.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_send_file_path(
    client: *mut cloister_client,
    room_id: *const c_char,
    path: *const c_char,
    mimetype: *const c_char,
    out_event_id: *mut *mut c_char,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or NUL-terminated strings that live through the call.
        let (room_id, path, mimetype) =
            unsafe { (arg_str(room_id)?, arg_str(path)?, opt_str(mimetype)?) };
        let mimetype = mimetype.unwrap_or(DEFAULT_MIMETYPE);
        // SAFETY: NULL (not wanted) or writable (header contract).
        let out_event_id = unsafe { opt_out(out_event_id) };
        check_room_id(room_id)?;
        let current = shared.logged_in()?;
        let data = std::fs::read(path)
            .map_err(|e| Error::new(CLOISTER_RESULT_IO, format!("reading {path}: {e}")))?;
        let name = Path::new(path)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("file");
        let event_id = block_on(current.send_file(room_id, name, mimetype, &data))??;
        give_event_id(out_event_id, &event_id);
        Ok(())
    })
}

/// The attachment of a file event (`None`: NULL), downloaded, checked and
/// decrypted.
fn download(shared: &Shared, event: Option<&cloister_event>) -> Result<Vec<u8>> {
    let event = event.ok_or_else(|| Error::code(CLOISTER_RESULT_NULL_ARGUMENT))?;
    let file = event
        .timeline
        .as_ref()
        .and_then(|t| t.encrypted_file())
        .ok_or_else(|| {
            Error::new(
                CLOISTER_RESULT_INVALID_STATE,
                "the event carries no encrypted file",
            )
        })?;
    let current = shared.logged_in()?;
    Ok(block_on(current.download_attachment(&file))??)
}

/// Download and decrypt the file of a file event (see
/// `cloister_event_has_file`) into a new buffer (free with
/// `cloister_buffer_free`). `CLOISTER_RESULT_INVALID_STATE` if the event
/// has no file; `CLOISTER_RESULT_CRYPTO` if it fails its hash check.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_download_file(
    client: *mut cloister_client,
    event: *const cloister_event,
    out_buffer: *mut *mut cloister_buffer,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or writable (the header's contract for out-parameters).
        let out_buffer = unsafe { out(out_buffer) }?;
        // SAFETY: NULL or an event from this library, not freed during the
        // call (header contract).
        let event = unsafe { event.as_ref() };
        let data = download(shared, event)?;
        out_buffer.put(cloister_buffer::new(data));
        Ok(())
    })
}

/// Like `cloister_client_download_file`, writing the decrypted file to
/// `path` (created or replaced).
#[no_mangle]
pub unsafe extern "C" fn cloister_client_download_file_to_path(
    client: *mut cloister_client,
    event: *const cloister_event,
    path: *const c_char,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or a NUL-terminated string that lives through the call.
        let path = unsafe { arg_str(path) }?;
        // SAFETY: NULL or an event from this library, not freed during the
        // call (header contract).
        let event = unsafe { event.as_ref() };
        let data = download(shared, event)?;
        std::fs::write(path, data)
            .map_err(|e| Error::new(CLOISTER_RESULT_IO, format!("writing {path}: {e}")))?;
        Ok(())
    })
}

/// A page of a room's history, decrypted, newest first: up to `limit`
/// events (1..=1000) before `from` (NULL: from the newest event; else the
/// end token of the previous page). Free with `cloister_event_list_free`.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_room_messages(
    client: *mut cloister_client,
    room_id: *const c_char,
    from: *const c_char,
    limit: u32,
    out_events: *mut *mut cloister_event_list,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or writable (the header's contract for out-parameters).
        let out_events = unsafe { out(out_events) }?;
        // SAFETY: NULL or NUL-terminated strings that live through the call.
        let (room_id, from) = unsafe { (arg_str(room_id)?, opt_str(from)?) };
        check_room_id(room_id)?;
        if !(1..=1000).contains(&limit) {
            return Err(Error::new(
                CLOISTER_RESULT_INVALID_ARGUMENT,
                "limit must be between 1 and 1000",
            ));
        }
        let current = shared.logged_in()?;
        let page = block_on(current.messages(room_id, from, Direction::Backward, limit))??;
        out_events.put(cloister_event_list::new(page.events, page.end));
        Ok(())
    })
}

/// The device ids of this user's devices, as the server lists them.
/// Free the list with `cloister_string_list_free`.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_devices(
    client: *const cloister_client,
    out_devices: *mut *mut cloister_string_list,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or writable (the header's contract for out-parameters).
        let out_devices = unsafe { out(out_devices) }?;
        let current = shared.logged_in()?;
        let devices = block_on(current.devices())??;
        let ids: Vec<String> = devices.into_iter().map(|d| d.device_id).collect();
        out_devices.put(cloister_string_list::new(ids));
        Ok(())
    })
}
