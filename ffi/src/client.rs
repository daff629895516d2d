//! The client handle: open/close a store, log in and out, last error, and
//! the room calls.

use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use cloister_sdk::client::{Client, CreateRoom};
use cloister_sdk::store::SqliteStore;

use crate::event::cloister_event;
use crate::result::*;
use crate::runtime::block_on;
use crate::sync::SyncTask;
use crate::types::{cloister_string_list, give_string, opt_out, out, run};

/// Called with each event when registered with
/// `cloister_client_set_event_callback`. Runs on a library thread (the
/// sync task, on one of the library's runtime threads), never on the
/// thread that registered it; `event` is borrowed for the call only. It
/// must not block for long and must not call blocking `cloister_client_*`
/// functions (they return `CLOISTER_RESULT_WRONG_THREAD` there).
pub type cloister_event_callback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const cloister_event)>;

#[derive(Clone, Copy)]
pub(crate) struct Callback {
    pub f: unsafe extern "C" fn(*mut c_void, *const cloister_event),
    pub user_data: *mut c_void,
}

// SAFETY: the function pointer is plain code; `user_data` the application
// promised (see `cloister_client_set_event_callback` in the header) may be
// used from the library's threads until the callback is unregistered and
// sync has stopped.
unsafe impl Send for Callback {}

/// Events kept for `cloister_client_next_event` at most; older ones are
/// dropped first.
pub(crate) const MAX_QUEUED_EVENTS: usize = 10_000;

/// A client: a store opened with its passphrase, and (once logged in or
/// restored) a session on the homeserver. Opaque; use it from any thread.
/// After `cloister_client_close` every call but `cloister_client_free` and
/// `cloister_client_last_error` returns `CLOISTER_RESULT_CLOSED`.
pub struct cloister_client {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    homeserver: String,
    closed: AtomicBool,
    last_error: Mutex<LastError>,
    store: Mutex<Option<Arc<SqliteStore>>>,
    pub(crate) client: Mutex<Option<Client>>,
    pub(crate) sync: Mutex<Option<SyncTask>>,
    pub(crate) queue: Mutex<std::collections::VecDeque<cloister_event>>,
    pub(crate) ready: Condvar,
    pub(crate) callback: Mutex<Option<Callback>>,
}

/// What `cloister_client_last_error` and
/// `cloister_client_last_retry_after_ms` report.
#[derive(Default)]
struct LastError {
    message: String,
    retry_after_ms: u64,
}

/// Lock, ignoring poisoning (a panic elsewhere is already reported).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn set_error(&self, error: &Error) {
        *lock(&self.last_error) = LastError {
            message: error.message.clone(),
            retry_after_ms: error.retry_after_ms,
        };
    }

    /// The logged-in client.
    pub(crate) fn logged_in(&self) -> Result<Client> {
        lock(&self.client).clone().ok_or_else(|| {
            Error::new(
                CLOISTER_RESULT_NOT_LOGGED_IN,
                "not logged in: call cloister_client_login first",
            )
        })
    }
}

/// Run `f` on an open handle (`None`: the caller passed NULL), keeping the
/// error text and retry delay on failure. Callers turn the raw handle
/// pointer into the reference once, at the boundary.
pub(crate) fn with_client(
    client: Option<&cloister_client>,
    f: impl FnOnce(&Arc<Shared>) -> Result<()>,
) -> cloister_result {
    guard(|| {
        let Some(handle) = client else {
            return CLOISTER_RESULT_NULL_ARGUMENT;
        };
        let shared = &handle.shared;
        let result = if shared.is_closed() {
            Err(Error::new(
                CLOISTER_RESULT_CLOSED,
                "the client handle is closed",
            ))
        } else {
            f(shared)
        };
        match result {
            Ok(()) => CLOISTER_RESULT_OK,
            Err(error) => {
                shared.set_error(&error);
                error.code
            }
        }
    })
}

/// Open (or create) the encrypted store at `store_path` with `passphrase`,
/// for the homeserver at `homeserver_url` (`http://` or `https://`), and
/// write a new handle to `*out_client`. If the store holds a session (from
/// an earlier login) the client is logged in already.
///
/// Errors: `CLOISTER_RESULT_NULL_ARGUMENT`, `CLOISTER_RESULT_INVALID_UTF8`,
/// `CLOISTER_RESULT_INVALID_ARGUMENT` (bad URL),
/// `CLOISTER_RESULT_WRONG_PASSPHRASE`, `CLOISTER_RESULT_STORE_IN_USE` (the
/// store is open in another handle), `CLOISTER_RESULT_STORE_ERROR`,
/// `CLOISTER_RESULT_IO`. No handle exists on failure, so there is no error
/// text: the code says it all.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_new(
    homeserver_url: *const c_char,
    store_path: *const c_char,
    passphrase: *const c_char,
    out_client: *mut *mut cloister_client,
) -> cloister_result {
    run(|| {
        // SAFETY: NULL or writable (the header's contract for out-parameters).
        let out_client = unsafe { out(out_client) }?;
        // SAFETY: NULL or NUL-terminated strings that live through the call
        // (the header's contract for `const char *` inputs).
        let (homeserver, path, passphrase) = unsafe {
            (
                arg_str(homeserver_url)?,
                arg_str(store_path)?,
                arg_str(passphrase)?,
            )
        };
        if !(homeserver.starts_with("http://") || homeserver.starts_with("https://")) {
            return Err(Error::new(
                CLOISTER_RESULT_INVALID_ARGUMENT,
                "the homeserver URL must start with http:// or https://",
            ));
        }
        let (store, client) = block_on(async {
            let store = Arc::new(SqliteStore::open(path, passphrase).await?);
            let client = Client::restore(store.clone()).await?;
            Ok::<_, Error>((store, client))
        })??;
        let shared = Arc::new(Shared {
            homeserver: homeserver.to_owned(),
            closed: AtomicBool::new(false),
            last_error: Mutex::new(LastError::default()),
            store: Mutex::new(Some(store)),
            client: Mutex::new(client),
            sync: Mutex::new(None),
            queue: Mutex::new(Default::default()),
            ready: Condvar::new(),
            callback: Mutex::new(None),
        });
        let handle = Box::into_raw(Box::new(cloister_client { shared }));
        Ok(out_client.put(handle))
    })
}

/// Close the handle: stop sync, release the store (another handle may
/// open it now) and wake `cloister_client_next_event` waiters. The handle
/// stays allocated: later calls return `CLOISTER_RESULT_CLOSED` (closing
/// twice too) until `cloister_client_free`. Must not be called from an
/// event callback.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_close(client: *mut cloister_client) -> cloister_result {
    // SAFETY: NULL or a handle from `cloister_client_new` not yet freed
    // (the header's contract for handles).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| close(shared))
}

fn close(shared: &Shared) -> Result<()> {
    crate::sync::stop(shared)?;
    shared.closed.store(true, Ordering::SeqCst);
    let client = lock(&shared.client).take();
    let store = lock(&shared.store).take();
    block_on(async move {
        drop(client);
        if let Some(store) = store.and_then(|s| Arc::try_unwrap(s).ok()) {
            store.close().await;
        }
    })?;
    lock(&shared.queue).clear();
    *lock(&shared.callback) = None;
    shared.ready.notify_all();
    Ok(())
}

/// Close the handle (if still open) and free it. NULL is a no-op. The
/// pointer is invalid afterwards: this is the one call that cannot detect
/// later misuse. Must not be called from an event callback.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_free(client: *mut cloister_client) {
    guard_value((), || {
        if client.is_null() {
            return;
        }
        // SAFETY: not NULL, and by the header's contract a handle from
        // `cloister_client_new` (`Box::into_raw`) that no other thread
        // uses any more and that is freed only once.
        let handle = unsafe { Box::from_raw(client) };
        if !handle.shared.is_closed() {
            let _ = close(&handle.shared);
        }
    })
}

/// The text of the last error on this handle ("" if none), as a new string
/// to free with `cloister_string_free`. Works on closed handles too.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_last_error(
    client: *const cloister_client,
    out_message: *mut *mut c_char,
) -> cloister_result {
    run(|| {
        // SAFETY: NULL or writable (the header's contract for out-parameters).
        let out_message = unsafe { out(out_message) }?;
        // SAFETY: NULL or a handle not yet freed (closed handles are fine).
        let handle =
            unsafe { client.as_ref() }.ok_or_else(|| Error::code(CLOISTER_RESULT_NULL_ARGUMENT))?;
        let text = lock(&handle.shared.last_error).message.clone();
        Ok(out_message.put(give_string(&text)))
    })
}

/// How long, in milliseconds, the homeserver asked this client to wait
/// before retrying, as of the handle's last error: non-zero after
/// `CLOISTER_RESULT_LIMIT_EXCEEDED` (`retry_after_ms` of the server's
/// `M_LIMIT_EXCEEDED`), 0 when the last error carried no delay, when there
/// was no error, and for NULL. Works on closed handles too.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_last_retry_after_ms(
    client: *const cloister_client,
) -> u64 {
    // SAFETY: NULL or a handle not yet freed (closed handles are fine).
    let client = unsafe { client.as_ref() };
    guard_value(0, || {
        client.map_or(0, |c| lock(&c.shared.last_error).retry_after_ms)
    })
}

/// Log in with a password, starting a new device whose keys are uploaded
/// and kept in the store. `device_name` may be NULL.
///
/// Errors: `CLOISTER_RESULT_ALREADY_LOGGED_IN`, `CLOISTER_RESULT_FORBIDDEN`
/// (wrong user or password), `CLOISTER_RESULT_LIMIT_EXCEEDED` (too many
/// attempts: see `cloister_client_last_retry_after_ms`),
/// `CLOISTER_RESULT_NETWORK` (server unreachable),
/// `CLOISTER_RESULT_SERVER_ERROR`, store errors.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_login(
    client: *mut cloister_client,
    user: *const c_char,
    password: *const c_char,
    device_name: *const c_char,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or NUL-terminated strings that live through the call.
        let (user, password, device_name) =
            unsafe { (arg_str(user)?, arg_str(password)?, opt_str(device_name)?) };
        if lock(&shared.client).is_some() {
            return Err(Error::new(
                CLOISTER_RESULT_ALREADY_LOGGED_IN,
                "this client is logged in already",
            ));
        }
        let store = lock(&shared.store)
            .clone()
            .ok_or_else(|| Error::code(CLOISTER_RESULT_CLOSED))?;
        let logged_in = block_on(Client::login(
            &shared.homeserver,
            user,
            password,
            store,
            device_name,
        ))??;
        tracing::info!(target: "cloister", user = logged_in.user_id(), "logged in");
        *lock(&shared.client) = Some(logged_in);
        Ok(())
    })
}

/// Log out: sync stops, the server deletes the device and the store is
/// wiped. The handle stays open; `cloister_client_login` may follow. If the
/// server had ended the session already (`CLOISTER_RESULT_UNKNOWN_TOKEN`
/// from other calls), this still succeeds and wipes the store: that is how
/// an app signs in again after its session was revoked.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_logout(client: *mut cloister_client) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        let current = shared.logged_in()?;
        crate::sync::stop(shared)?;
        block_on(current.logout())??;
        *lock(&shared.client) = None;
        Ok(())
    })
}

/// Whether the client has a session (logged in or restored); false for
/// NULL or closed handles.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_is_logged_in(client: *const cloister_client) -> bool {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    guard_value(false, || {
        client.is_some_and(|c| !c.shared.is_closed() && lock(&c.shared.client).is_some())
    })
}

/// This client's user id (e.g. "@alice:example.org"), as a new string to
/// free with `cloister_string_free`.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_user_id(
    client: *const cloister_client,
    out_user_id: *mut *mut c_char,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or writable (the header's contract for out-parameters).
        let out_user_id = unsafe { out(out_user_id) }?;
        let current = shared.logged_in()?;
        out_user_id.put(give_string(current.user_id()));
        Ok(())
    })
}

/// This client's device id, as a new string to free with
/// `cloister_string_free`.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_device_id(
    client: *const cloister_client,
    out_device_id: *mut *mut c_char,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or writable (the header's contract for out-parameters).
        let out_device_id = unsafe { out(out_device_id) }?;
        let current = shared.logged_in()?;
        out_device_id.put(give_string(current.device_id()));
        Ok(())
    })
}

/// Create a private, end-to-end encrypted room. `name` may be NULL;
/// `invitees` is an array of `invitee_count` user ids (NULL when 0). The
/// new room's id is written to `*out_room_id` (free with
/// `cloister_string_free`).
#[no_mangle]
pub unsafe extern "C" fn cloister_client_create_room(
    client: *mut cloister_client,
    name: *const c_char,
    invitees: *const *const c_char,
    invitee_count: usize,
    out_room_id: *mut *mut c_char,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or writable (the header's contract for out-parameters).
        let out_room_id = unsafe { out(out_room_id) }?;
        // SAFETY: NULL or a NUL-terminated string that lives through the call.
        let name = unsafe { opt_str(name) }?;
        let invitees: &[*const c_char] = if invitee_count == 0 {
            &[]
        } else if invitees.is_null() {
            return Err(Error::code(CLOISTER_RESULT_NULL_ARGUMENT));
        } else {
            // SAFETY: not NULL; by the header's contract an array of
            // `invitee_count` pointers that lives through the call.
            unsafe { std::slice::from_raw_parts(invitees, invitee_count) }
        };
        let mut invite = Vec::with_capacity(invitee_count);
        for &user in invitees {
            // SAFETY: each entry is NULL or a NUL-terminated string that
            // lives through the call (header contract).
            let user = unsafe { arg_str(user) }?;
            check_user_id(user)?;
            invite.push(user.to_owned());
        }
        let current = shared.logged_in()?;
        let options = CreateRoom {
            name: name.map(str::to_owned),
            invite,
            ..Default::default()
        };
        let room_id = block_on(current.create_room(&options))??;
        out_room_id.put(give_string(&room_id));
        Ok(())
    })
}

/// Invite `user_id` to `room_id`.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_invite(
    client: *mut cloister_client,
    room_id: *const c_char,
    user_id: *const c_char,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or NUL-terminated strings that live through the call.
        let (room_id, user_id) = unsafe { (arg_str(room_id)?, arg_str(user_id)?) };
        check_room_id(room_id)?;
        check_user_id(user_id)?;
        let current = shared.logged_in()?;
        block_on(current.invite(room_id, user_id))??;
        Ok(())
    })
}

/// Join a room by id (`!…`) or alias (`#…`). The room id is written to
/// `*out_room_id` unless it is NULL (free with `cloister_string_free`).
#[no_mangle]
pub unsafe extern "C" fn cloister_client_join(
    client: *mut cloister_client,
    room_id_or_alias: *const c_char,
    out_room_id: *mut *mut c_char,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or a NUL-terminated string that lives through the call.
        let room = unsafe { arg_str(room_id_or_alias) }?;
        // SAFETY: NULL (not wanted) or writable (header contract).
        let out_room_id = unsafe { opt_out(out_room_id) };
        if !room.starts_with('#') {
            check_room_id(room)?;
        }
        let current = shared.logged_in()?;
        let room_id = block_on(current.join(room))??;
        if let Some(out_room_id) = out_room_id {
            out_room_id.put(give_string(&room_id));
        }
        Ok(())
    })
}

/// Leave a room.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_leave(
    client: *mut cloister_client,
    room_id: *const c_char,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or a NUL-terminated string that lives through the call.
        let room_id = unsafe { arg_str(room_id) }?;
        check_room_id(room_id)?;
        let current = shared.logged_in()?;
        block_on(current.leave(room_id))??;
        Ok(())
    })
}

/// The rooms this client is joined to or invited to, as sync reported them
/// (sorted by id). Free the list with `cloister_string_list_free`.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_rooms(
    client: *const cloister_client,
    out_rooms: *mut *mut cloister_string_list,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or writable (the header's contract for out-parameters).
        let out_rooms = unsafe { out(out_rooms) }?;
        let current = shared.logged_in()?;
        let rooms = block_on(current.rooms())?;
        let mut ids: Vec<String> = rooms
            .into_iter()
            .filter(|r| {
                matches!(
                    r.membership,
                    cloister_sdk::client::Membership::Join
                        | cloister_sdk::client::Membership::Invite
                )
            })
            .map(|r| r.room_id)
            .collect();
        ids.sort();
        out_rooms.put(cloister_string_list::new(ids));
        Ok(())
    })
}

/// The joined and invited members of a room, as the server lists them now
/// (sorted). Free the list with `cloister_string_list_free`.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_room_members(
    client: *const cloister_client,
    room_id: *const c_char,
    out_members: *mut *mut cloister_string_list,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or writable (the header's contract for out-parameters).
        let out_members = unsafe { out(out_members) }?;
        // SAFETY: NULL or a NUL-terminated string that lives through the call.
        let room_id = unsafe { arg_str(room_id) }?;
        check_room_id(room_id)?;
        let current = shared.logged_in()?;
        let members = block_on(current.active_members(room_id))??;
        out_members.put(cloister_string_list::new(members));
        Ok(())
    })
}
