//! Cloister driven by the Rust SDK that Element X runs: `matrix-sdk` and
//! `matrix-sdk-ui` from crates.io, over simplified sliding sync (MSC4186),
//! against the real server of the `cloister-tests` harness (issue #14).
//!
//! Versions, pinned exactly in Cargo.toml: matrix-sdk and matrix-sdk-ui
//! 0.18.0, the newest release that builds with this repository's rustc
//! (1.95; 0.19 needs 1.96). Bump them deliberately, one release at a time:
//! each release changes what the SDK asks of the server. Features: only
//! `e2e-encryption`, with the in-memory stores (see Cargo.toml for why not
//! SQLite).
//!
//! What this crate offers the tests in `tests/`: a logged-in matrix-sdk
//! client ([`element_x_client`]), a watcher over the room list the way the
//! app shows it ([`RoomListWatcher`]), and [`wait_until`], the one way the
//! tests wait: for a condition, with a bound, then they assert.
//!
//! `RUST_LOG=matrix_sdk=debug,matrix_sdk_ui=debug` prints each request the
//! SDK makes and its status, `matrix_sdk::sliding_sync=trace` each sliding
//! sync response as the SDK parsed it, through [`init_tracing`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cloister_sdk::client::{Client as CloisterClient, CreateRoom, TimelineEvent};
use cloister_sdk::store::MemoryStore;
use cloister_tests::{unique, Backend, Client as RawClient, TestServer};
use futures::{Stream, StreamExt};
use matrix_sdk::ruma::OwnedRoomId;
use matrix_sdk::sliding_sync::VersionBuilder;
use matrix_sdk::{Client, Room, RoomState};
use matrix_sdk_ui::eyeball_im::{Vector, VectorDiff};
use matrix_sdk_ui::room_list_service::RoomListItem;
use matrix_sdk_ui::sync_service::SyncService;

/// How long one condition may take to come true before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// The password of every account these tests register.
pub const PASSWORD: &str = "a long enough password";

/// Sends the SDK's tracing to the test output, filtered by `RUST_LOG`
/// (nothing when unset). Safe to call from every test.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A matrix-sdk client configured as Element X configures it for sliding
/// sync (the native MSC4186 version, discovered from `/versions`), in
/// memory, logged in with `localpart`'s password as a new device.
pub async fn element_x_client(server_url: &str, localpart: &str) -> Client {
    let client = Client::builder()
        .homeserver_url(server_url)
        .sliding_sync_version_builder(VersionBuilder::DiscoverNative)
        .build()
        .await
        .expect("build the matrix-sdk client (it reads /versions)");
    client
        .matrix_auth()
        .login_username(localpart, PASSWORD)
        .initial_device_display_name("Element X (matrix-sdk test)")
        .await
        .expect("log in with matrix-sdk");
    client
}

/// The usual cast: a server; Alice, registered, on matrix-sdk (logged in
/// as a new device, not syncing yet) and on a plain HTTP device; Bob,
/// registered, on Cloister's own SDK (in memory) and on a plain HTTP device.
pub struct Cast {
    pub server: TestServer,
    pub alice: Client,
    pub alice_name: String,
    pub alice_id: String,
    pub alice_http: RawClient,
    pub bob: CloisterClient,
    pub bob_name: String,
    pub bob_http: RawClient,
}

impl Cast {
    pub async fn new(backend: Backend) -> Cast {
        init_tracing();
        let server = TestServer::start(backend).await;
        let url = server.url();
        let (alice_name, bob_name) = (unique("alice"), unique("bob"));
        let alice_http = RawClient::register(&url, &alice_name, PASSWORD).await;
        let bob_http = RawClient::register(&url, &bob_name, PASSWORD).await;
        let bob = cloister_sdk_client(&url, &bob_name, "bob").await;
        let alice = element_x_client(&url, &alice_name).await;
        Cast {
            alice_id: server.user_id(&alice_name),
            server,
            alice,
            alice_name,
            alice_http,
            bob,
            bob_name,
            bob_http,
        }
    }

    /// Starts Alice's `SyncService`, as Element X does on launch.
    pub async fn start_alice_sync(&self) -> SyncService {
        let sync = SyncService::builder(self.alice.clone())
            .build()
            .await
            .expect("build the SyncService");
        sync.start().await;
        sync
    }

    /// Bob creates an encrypted room named `name` (no name when empty) and
    /// invites Alice, who accepts once the invite reached her sliding sync
    /// (her `SyncService` must run); returns the room once she has it as
    /// joined and encrypted and Bob's SDK sees her in it.
    pub async fn room_with_alice(&self, name: &str) -> Room {
        let room = self
            .bob
            .create_room(&CreateRoom {
                name: (!name.is_empty()).then(|| name.to_owned()),
                invite: vec![self.alice_id.clone()],
                ..Default::default()
            })
            .await
            .expect("Bob creates the room");
        let room_id = OwnedRoomId::try_from(room.as_str()).unwrap();
        let alice = &self.alice;
        let invited = wait_until(&format!("Alice's invite to {name}"), || {
            let found = alice
                .get_room(&room_id)
                .filter(|r| r.state() == RoomState::Invited);
            async move { found }
        })
        .await;
        invited.join().await.expect("Alice joins");
        let joined = wait_until(&format!("{name} joined and known encrypted"), || {
            let room = alice.get_room(&room_id);
            async move {
                let room = room.filter(|r| r.state() == RoomState::Joined)?;
                let encrypted = room.latest_encryption_state().await.ok()?.is_encrypted();
                encrypted.then_some(room)
            }
        })
        .await;
        wait_until("Bob's SDK to see Alice joined", || async {
            let members = self.bob.active_members(&room).await.ok()?;
            members.contains(&self.alice_id).then_some(())
        })
        .await;
        joined
    }
}

/// Cloister's own SDK, logged in with `localpart`'s password as a new
/// device named `device_name`, with an in-memory store.
pub async fn cloister_sdk_client(url: &str, localpart: &str, device_name: &str) -> CloisterClient {
    CloisterClient::login(
        url,
        localpart,
        PASSWORD,
        Arc::new(MemoryStore::new()),
        Some(device_name),
    )
    .await
    .expect("log in with Cloister's SDK")
}

/// Syncs a Cloister SDK client until an `m.room.message` with this body
/// arrives, for at most [`WAIT`]; panics with what came instead.
pub async fn receive_message(client: &CloisterClient, body: &str) -> TimelineEvent {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen = Vec::new();
    while tokio::time::Instant::now() < deadline {
        let summary = client
            .sync_once(Duration::from_millis(500))
            .await
            .expect("sync Cloister's SDK");
        for event in summary.events {
            if event.body() == Some(body) {
                return event;
            }
            seen.push((event.event_type.clone(), event.encryption.clone()));
        }
    }
    panic!(
        "{} never received {body:?}; got {seen:?}, waiting for keys: {:?}",
        client.device_id(),
        client.undecrypted_events().await
    );
}

/// The name Element X shows for a room, computed afresh from what the
/// SDK holds of it (`Room::display_name` keeps its first answer, which can
/// come before the response that listed the room was applied).
pub fn shown_name(room: &Room) -> String {
    matrix_sdk::BaseRoom::compute_display_name_with_fields(
        room.name(),
        room.canonical_alias().as_deref(),
        room.heroes(),
        room.joined_members_count(),
    )
    .to_string()
}

/// Waits until `check` returns `Some`, trying again every 50 ms, for at most
/// [`WAIT`]; panics naming `what` (and the last `describe()`) otherwise.
pub async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {WAIT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

type Diffs<'a> = Pin<Box<dyn Stream<Item = Vec<VectorDiff<RoomListItem>>> + Send + 'a>>;

/// The room list as the app displays it: the diffs of
/// `RoomList::entries_with_dynamic_adapters` (filtered, sorted) applied to
/// a vector, in order.
pub struct RoomListWatcher<'a> {
    diffs: Diffs<'a>,
    rooms: Vector<RoomListItem>,
}

impl<'a> RoomListWatcher<'a> {
    pub fn new(diffs: impl Stream<Item = Vec<VectorDiff<RoomListItem>>> + Send + 'a) -> Self {
        RoomListWatcher {
            diffs: Box::pin(diffs),
            rooms: Vector::new(),
        }
    }

    /// The room ids, in display order.
    pub fn room_ids(&self) -> Vec<OwnedRoomId> {
        self.rooms.iter().map(|r| r.room_id().to_owned()).collect()
    }

    /// The room with this id, if the list shows it.
    pub fn room(&self, room_id: &OwnedRoomId) -> Option<&RoomListItem> {
        self.rooms.iter().find(|r| r.room_id() == room_id)
    }

    /// Applies diffs as they come until `check(list)` returns `Some`, for
    /// at most [`WAIT`]; `check` also runs every 100 ms between diffs, for
    /// what changes without one (a room's latest event). Panics with the
    /// list's room ids if it never holds.
    pub async fn wait_for<T, F, Fut>(&mut self, what: &str, mut check: F) -> T
    where
        F: FnMut(&Self) -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(value) = check(self).await {
                return value;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                let shown: Vec<_> = self
                    .rooms
                    .iter()
                    .map(|r| (r.room_id().to_owned(), r.state(), shown_name(r)))
                    .collect();
                panic!("timed out after {WAIT:?} waiting for {what}; the list shows {shown:?}");
            }
            let tick = Duration::from_millis(100).min(deadline - now);
            match tokio::time::timeout(tick, self.diffs.next()).await {
                Ok(Some(diffs)) => {
                    for diff in diffs {
                        diff.apply(&mut self.rooms);
                    }
                }
                Ok(None) => panic!("the room list stream ended while waiting for {what}"),
                Err(_) => {}
            }
        }
    }
}
