//! Sending text and files, downloading attachments, history, devices.

use std::ffi::c_char;
use std::path::Path;

use cloister_sdk::client::Direction;

use crate::client::{cloister_client, maybe_give, with_client};
use crate::event::{cloister_event, cloister_event_list};
use crate::result::*;
use crate::runtime::block_on;
use crate::types::{cloister_buffer, cloister_string_list, need_out, write_out};

const DEFAULT_MIMETYPE: &str = "application/octet-stream";

/// Send an end-to-end encrypted text message. The event id is written to
/// `*out_event_id` unless it is NULL (free with `cloister_string_free`).
#[no_mangle]
pub unsafe extern "C" fn cloister_client_send_text(
    client: *mut cloister_client,
    room_id: *const c_char,
    body: *const c_char,
    out_event_id: *mut *mut c_char,
) -> cloister_result {
    with_client(client, |shared| {
        let room_id = arg_str(room_id)?;
        let body = arg_str(body)?;
        check_room_id(room_id)?;
        let current = shared.logged_in()?;
        let event_id = block_on(current.send_text(room_id, body))??;
        maybe_give(out_event_id, &event_id);
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
    with_client(client, |shared| {
        let room_id = arg_str(room_id)?;
        let file_name = arg_str(file_name)?;
        let mimetype = opt_str(mimetype)?.unwrap_or(DEFAULT_MIMETYPE);
        check_room_id(room_id)?;
        let bytes: &[u8] = if len == 0 {
            &[]
        } else if data.is_null() {
            return Err(Error::code(CLOISTER_RESULT_NULL_ARGUMENT));
        } else {
            std::slice::from_raw_parts(data, len)
        };
        let current = shared.logged_in()?;
        let event_id = block_on(current.send_file(room_id, file_name, mimetype, bytes))??;
        maybe_give(out_event_id, &event_id);
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
    with_client(client, |shared| {
        let room_id = arg_str(room_id)?;
        let path = arg_str(path)?;
        let mimetype = opt_str(mimetype)?.unwrap_or(DEFAULT_MIMETYPE);
        check_room_id(room_id)?;
        let current = shared.logged_in()?;
        let data = std::fs::read(path)
            .map_err(|e| Error::new(CLOISTER_RESULT_IO, format!("reading {path}: {e}")))?;
        let name = Path::new(path)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("file");
        let event_id = block_on(current.send_file(room_id, name, mimetype, &data))??;
        maybe_give(out_event_id, &event_id);
        Ok(())
    })
}

/// The attachment of a file event, downloaded, checked and decrypted.
fn download(shared: &crate::client::Shared, event: *const cloister_event) -> Result<Vec<u8>> {
    let event =
        unsafe { event.as_ref() }.ok_or_else(|| Error::code(CLOISTER_RESULT_NULL_ARGUMENT))?;
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
    with_client(client, |shared| {
        need_out(out_buffer)?;
        let data = download(shared, event)?;
        write_out(out_buffer, cloister_buffer::new(data));
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
    with_client(client, |shared| {
        let path = arg_str(path)?;
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
    with_client(client, |shared| {
        need_out(out_events)?;
        let room_id = arg_str(room_id)?;
        let from = opt_str(from)?;
        check_room_id(room_id)?;
        if !(1..=1000).contains(&limit) {
            return Err(Error::new(
                CLOISTER_RESULT_INVALID_ARGUMENT,
                "limit must be between 1 and 1000",
            ));
        }
        let current = shared.logged_in()?;
        let page = block_on(current.messages(room_id, from, Direction::Backward, limit))??;
        write_out(out_events, cloister_event_list::new(page.events, page.end));
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
    with_client(client, |shared| {
        need_out(out_devices)?;
        let current = shared.logged_in()?;
        let devices = block_on(current.devices())??;
        let ids: Vec<String> = devices.into_iter().map(|d| d.device_id).collect();
        write_out(out_devices, cloister_string_list::new(ids));
        Ok(())
    })
}
