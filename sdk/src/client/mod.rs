//! The async client: a logged-in device on a homeserver, with its crypto
//! core and its store.
//!
//! ```no_run
//! # async fn example() -> Result<(), cloister_sdk::client::ClientError> {
//! use std::sync::Arc;
//! use cloister_sdk::client::Client;
//! use cloister_sdk::store::SqliteStore;
//!
//! let store = Arc::new(SqliteStore::open("/tmp/alice.db", "passphrase").await?);
//! let client = Client::login("https://chat.example.org", "alice", "secret", store, None).await?;
//! client.sync_once(std::time::Duration::ZERO).await?;
//! let room = client.create_room(&cloister_sdk::client::CreateRoom::default()).await?;
//! client.send_text(&room, "hello").await?;
//! # Ok(()) }
//! ```
//!
//! Every change to the crypto state is committed to the store before the
//! request it belongs to leaves (a Megolm ratchet is saved before the
//! message encrypted with it is sent), and what a sync taught is committed
//! together with that sync's token.

mod events;
mod http;
mod messages;
mod recovery;
mod retention;
mod rooms;
mod state;
mod sync;
mod verification;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::{broadcast, Mutex, MutexGuard};

use crate::crypto::{Device, DeviceTrust, LocalTrust, OlmMachine, OutgoingRequest, RECORD_KINDS};
use crate::store::{StateStore, StoreChanges};

pub use events::{Encryption, TimelineEvent};
pub use http::ClientError;
pub use messages::{Direction, Messages};
pub use recovery::RecoveryReport;
pub use rooms::CreateRoom;
pub use state::{Membership, Room, Session};
pub use sync::{SyncLoop, SyncSummary};

use http::{encode, Http, Result};
use state::{session_record, ClientState};

/// How many decrypted events a slow subscriber may fall behind before it
/// misses some.
const EVENT_BUFFER: usize = 4096;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One of this user's devices as the server lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceInfo {
    /// The device id.
    pub device_id: String,
    /// The name the user gave the device, if any.
    pub display_name: Option<String>,
    /// When the server last saw the device, in milliseconds since the Unix
    /// epoch, if it says.
    pub last_seen_ts: Option<u64>,
    /// Whether this is the client's own device.
    pub is_current: bool,
}

struct Inner {
    http: Http,
    session: Session,
    store: Arc<dyn StateStore>,
    /// Lock order: `state` before `machine`. Every store commit happens
    /// while `machine` is held, so commits never interleave.
    state: Mutex<ClientState>,
    machine: Mutex<OlmMachine>,
    /// Serializes everything that sends the crypto core's requests, so a
    /// request is never in flight twice (a doubled `/keys/claim` would burn
    /// one-time keys).
    send_lock: Mutex<()>,
    /// One `/sync` at a time.
    sync_lock: Mutex<Vec<TimelineEvent>>,
    events: broadcast::Sender<TimelineEvent>,
    /// Replaces the system clock when set (see [`Client::set_clock`]).
    clock: std::sync::RwLock<Option<ClockFn>>,
    /// (room, session) already asked of the key backup.
    backup_tried: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
}

/// A source of "now" in milliseconds since the Unix epoch.
type ClockFn = Arc<dyn Fn() -> u64 + Send + Sync>;

/// A logged-in device. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("session", &self.inner.session)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Log in with a password and start a new device whose state lives in
    /// `store`, which must be empty. Uploads the device's keys.
    pub async fn login(
        homeserver: &str,
        user: &str,
        password: &str,
        store: Arc<dyn StateStore>,
        device_display_name: Option<&str>,
    ) -> Result<Self> {
        let stored = store.load().await?;
        let (_, existing) = ClientState::from_records(&stored.records, None)?;
        if let Some(existing) = existing {
            return Err(ClientError::AlreadyLoggedIn(existing.user_id.clone()));
        }
        let http = Http::new(homeserver, None)?;
        let mut body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        });
        if let Some(name) = device_display_name {
            body["initial_device_display_name"] = json!(name);
        }
        let response = http.post("/_matrix/client/v3/login", &body).await?;
        let text = |name: &str| {
            response
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| ClientError::InvalidResponse {
                    path: "/_matrix/client/v3/login".to_owned(),
                    reason: format!("no {name}"),
                })
        };
        let session = Session {
            homeserver: http.base_url().to_owned(),
            user_id: text("user_id")?,
            device_id: text("device_id")?,
            access_token: text("access_token")?,
        };
        let mut machine = OlmMachine::new(&session.user_id, &session.device_id)?;
        let changes = machine.pending_changes()?;
        store
            .commit(StoreChanges {
                upserts: changes
                    .upserts
                    .into_iter()
                    .chain([session_record(&session)?])
                    .collect(),
                deletes: changes.deletes,
                sync_token: None,
            })
            .await?;
        machine.mark_changes_saved();
        let client = Self::build(http, session, store, ClientState::default(), machine);
        client.send_crypto_requests().await?;
        Ok(client)
    }

    /// The client whose session is in `store`, or `None` if it holds none.
    pub async fn restore(store: Arc<dyn StateStore>) -> Result<Option<Self>> {
        let stored = store.load().await?;
        let (state, session) = ClientState::from_records(&stored.records, stored.sync_token)?;
        let Some(session) = session else {
            return Ok(None);
        };
        let crypto_records = stored
            .records
            .into_iter()
            .filter(|r| RECORD_KINDS.contains(&r.kind.as_str()));
        let machine = OlmMachine::from_records(crypto_records)?;
        let http = Http::new(&session.homeserver, None)?;
        Ok(Some(Self::build(http, session, store, state, machine)))
    }

    fn build(
        http: Http,
        session: Session,
        store: Arc<dyn StateStore>,
        state: ClientState,
        machine: OlmMachine,
    ) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Self {
            inner: Arc::new(Inner {
                http: http.with_token(session.access_token.clone()),
                session,
                store,
                state: Mutex::new(state),
                machine: Mutex::new(machine),
                send_lock: Mutex::new(()),
                sync_lock: Mutex::new(Vec::new()),
                events,
                clock: std::sync::RwLock::new(None),
                backup_tried: std::sync::Mutex::new(std::collections::HashSet::new()),
            }),
        }
    }

    /// Log out: the server deletes the device and its keys, and the store
    /// is wiped. When the server answers `M_UNKNOWN_TOKEN` (the session was
    /// revoked or expired already) the store is wiped too and this succeeds:
    /// that is how an app recovers from a revoked session before
    /// [`Client::login`] again.
    pub async fn logout(self) -> Result<()> {
        match self
            .inner
            .http
            .post("/_matrix/client/v3/logout", &json!({}))
            .await
        {
            Ok(_) => {}
            // The server ended the session already (revoked from another
            // device, expired): what is left to do is forgetting it here.
            Err(error) if error.code() == Some(cloister_proto::ErrCode::UnknownToken) => {}
            Err(error) => return Err(error),
        }
        self.inner.store.clear().await?;
        Ok(())
    }

    /// The session: homeserver, user id, device id and access token.
    pub fn session(&self) -> &Session {
        &self.inner.session
    }

    /// This client's user id (`@alice:example.org`).
    pub fn user_id(&self) -> &str {
        &self.inner.session.user_id
    }

    /// This client's device id.
    pub fn device_id(&self) -> &str {
        &self.inner.session.device_id
    }

    /// Use `clock` (milliseconds since the Unix epoch) instead of the system
    /// clock for everything time-dependent in this client: key rotation,
    /// retention. For tests, and for apps with a better time source than
    /// the device's clock. Clones of the client share it.
    pub fn set_clock(&self, clock: impl Fn() -> u64 + Send + Sync + 'static) {
        if let Ok(mut slot) = self.inner.clock.write() {
            *slot = Some(Arc::new(clock));
        }
    }

    /// The current time as this client sees it.
    pub(crate) fn now(&self) -> u64 {
        match self.inner.clock.read().ok().and_then(|c| c.clone()) {
            Some(clock) => clock(),
            None => now_ms(),
        }
    }

    /// This device's Ed25519 fingerprint, unpadded base64.
    pub async fn fingerprint(&self) -> String {
        self.inner
            .machine
            .lock()
            .await
            .identity_keys()
            .ed25519
            .to_base64()
    }

    /// Subscribe to decrypted room events from syncs. Each subscriber gets
    /// every event from the moment it subscribes.
    pub fn subscribe(&self) -> broadcast::Receiver<TimelineEvent> {
        self.inner.events.subscribe()
    }

    /// The same as [`subscribe`](Self::subscribe), as a `Stream`. Events a
    /// slow consumer missed are skipped.
    pub fn event_stream(&self) -> impl futures::Stream<Item = TimelineEvent> + Send + 'static {
        futures::stream::unfold(self.subscribe(), |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(event) => return Some((event, receiver)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    /// This user's devices, as the server lists them.
    pub async fn devices(&self) -> Result<Vec<DeviceInfo>> {
        let response = self.inner.http.get("/_matrix/client/v3/devices").await?;
        let devices = response
            .get("devices")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(devices
            .iter()
            .filter_map(|d| {
                let device_id = d.get("device_id")?.as_str()?.to_owned();
                Some(DeviceInfo {
                    is_current: device_id == self.device_id(),
                    display_name: d
                        .get("display_name")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    last_seen_ts: d.get("last_seen_ts").and_then(Value::as_u64),
                    device_id,
                })
            })
            .collect())
    }

    /// A user's devices with their verified keys, as the crypto core knows
    /// them (users sharing an encrypted room with us, and ourselves).
    pub async fn user_devices(&self, user_id: &str) -> Vec<Device> {
        self.inner.machine.lock().await.user_devices(user_id)
    }

    /// How far a known device can be trusted: the user's own decision,
    /// then cross-signing. None for a device this client does not know.
    pub async fn device_trust(&self, user_id: &str, device_id: &str) -> Option<DeviceTrust> {
        self.inner
            .machine
            .lock()
            .await
            .device_trust(user_id, device_id)
    }

    /// Record the user's decision about a device (after comparing its
    /// fingerprint out of band, say). Blocking a device stops room keys
    /// going to it and rotates the keys it held. Returns whether the device
    /// is known.
    pub async fn set_device_trust(
        &self,
        user_id: &str,
        device_id: &str,
        trust: LocalTrust,
    ) -> Result<bool> {
        let mut machine = self.inner.machine.lock().await;
        let known = machine.set_local_trust(user_id, device_id, trust);
        self.save(None, &mut machine, None).await?;
        Ok(known)
    }

    /// Application data kept (sealed, in the SQLite store) with the rest of
    /// the client's state.
    pub async fn app_data(&self, key: &str) -> Option<Vec<u8>> {
        let state = self.inner.state.lock().await;
        state.app_data.get(key).map(|v| v.to_vec())
    }

    /// Set (`Some`) or remove (`None`) application data; saved at once.
    pub async fn set_app_data(&self, key: &str, value: Option<Vec<u8>>) -> Result<()> {
        let mut state = self.inner.state.lock().await;
        match value {
            Some(v) => state.app_data.insert(key.to_owned(), v.into()),
            None => state.app_data.remove(key),
        };
        state.dirty_app.insert(key.to_owned());
        let mut machine = self.inner.machine.lock().await;
        self.save(Some(&mut state), &mut machine, None).await
    }

    /// Commit the crypto core's changes, the client state's (when given)
    /// and the sync token, in one transaction.
    async fn save(
        &self,
        state: Option<&mut ClientState>,
        machine: &mut MutexGuard<'_, OlmMachine>,
        sync_token: Option<String>,
    ) -> Result<()> {
        let crypto = machine.pending_changes()?;
        let mut changes = StoreChanges {
            upserts: crypto.upserts,
            deletes: crypto.deletes,
            sync_token,
        };
        if let Some(state) = &state {
            let own = state.changed_records()?;
            changes.upserts.extend(own.upserts);
            changes.deletes.extend(own.deletes);
        }
        if !changes.is_empty() {
            self.inner.store.commit(changes).await?;
        }
        machine.mark_changes_saved();
        if let Some(state) = state {
            state.mark_saved();
        }
        Ok(())
    }

    /// Send one of the crypto core's requests and hand its answer back.
    /// The caller holds `send_lock`.
    async fn send_crypto_request(&self, request: &OutgoingRequest) -> Result<()> {
        let method = reqwest::Method::from_bytes(request.method().as_bytes())
            .unwrap_or(reqwest::Method::POST);
        let response = self
            .inner
            .http
            .json(
                method,
                &request.path(),
                Some(&request.json_body()),
                http::REQUEST_TIMEOUT,
            )
            .await?;
        let mut machine = self.inner.machine.lock().await;
        machine.mark_request_as_sent(&request.request_id, &response)?;
        self.save(None, &mut machine, None).await
    }

    /// Send everything the crypto core has queued (key uploads, device
    /// queries, Olm session claims, to-device messages) until it has
    /// nothing more.
    pub async fn send_crypto_requests(&self) -> Result<()> {
        let _guard = self.inner.send_lock.lock().await;
        for _ in 0..8 {
            let requests = {
                let mut machine = self.inner.machine.lock().await;
                let requests = machine.outgoing_requests()?;
                self.save(None, &mut machine, None).await?;
                requests
            };
            if requests.is_empty() {
                return Ok(());
            }
            for request in &requests {
                match self.send_crypto_request(request).await {
                    // The backup was replaced or deleted by another device:
                    // stop uploading to it rather than retry forever.
                    Err(error) if is_gone_backup(request, &error) => {
                        let mut machine = self.inner.machine.lock().await;
                        machine.disable_backup();
                        self.save(None, &mut machine, None).await?;
                    }
                    other => other?,
                }
            }
        }
        Ok(())
    }
}

fn is_gone_backup(request: &OutgoingRequest, error: &ClientError) -> bool {
    matches!(request.body, crate::crypto::RequestBody::BackupKeys { .. })
        && (matches!(error, ClientError::Server { status: 404, .. })
            || error.code() == Some(cloister_proto::ErrCode::WrongRoomKeysVersion))
}

/// `/_matrix/client/v3/rooms/{room_id}/…`
pub(crate) fn room_path(room_id: &str, rest: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}/{rest}", encode(room_id))
}

/// The client's processing of one `/sync` response without HTTP or store:
/// apply it (to-device, device lists, rooms), decrypt its timelines, and
/// serialize the resulting state changes. For benchmarks; returns the
/// number of decrypted events.
#[doc(hidden)]
pub fn process_sync_without_io(machine: &mut OlmMachine, own_user: &str, sync: &Value) -> usize {
    let mut state = ClientState::default();
    let applied = sync::apply_sync_response(&mut state, machine, own_user, sync, false, now_ms());
    let events = sync::decrypt_timeline(machine, &applied.timeline);
    let _ = machine.pending_changes();
    let _ = state.changed_records();
    machine.mark_changes_saved();
    events.iter().filter(|e| e.is_decrypted()).count()
}
