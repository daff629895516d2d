//! Element X's side of tests/js/element-x.test.mjs: matrix-sdk and
//! matrix-sdk-ui, driven over stdin/stdout by a matrix-js-sdk test, so a
//! message from matrix-js-sdk is decrypted in the matrix-sdk-ui `Timeline`
//! and an answer from that timeline is decrypted by matrix-js-sdk.
//!
//! `element-x-probe URL LOCALPART PASSWORD`: logs in (a new device), runs
//! `SyncService` over sliding sync and prints one line per step:
//! `READY <device>` (its keys are on their way up: the test waits for
//! them at `/keys/query`); `JOINED <room>` once an invite came and was taken;
//! `DECRYPTED <body>` for the first text message from someone else,
//! decrypted; `SENT <event id>` for its answer, sent from the timeline.
//! It then stays (its keys answer the other side's queries) until stdin
//! closes. Errors go to stderr with a non-zero exit. Test tooling only.

use std::io::BufRead;
use std::time::Duration;

use cloister_element_x_tests::wait_until;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::sliding_sync::VersionBuilder;
use matrix_sdk::Client;
use matrix_sdk_ui::sync_service::SyncService;
use matrix_sdk_ui::timeline::RoomExt;

/// What Element X answers with.
const ANSWER: &str = "answered from Element X's timeline";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    cloister_element_x_tests::init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, localpart, password] = args.as_slice() else {
        eprintln!("usage: element-x-probe URL LOCALPART PASSWORD");
        std::process::exit(2);
    };
    let client = Client::builder()
        .homeserver_url(url)
        .sliding_sync_version_builder(VersionBuilder::DiscoverNative)
        .build()
        .await
        .expect("build the matrix-sdk client");
    client
        .matrix_auth()
        .login_username(localpart, password)
        .initial_device_display_name("Element X (probe)")
        .await
        .expect("log in");
    let sync = SyncService::builder(client.clone())
        .build()
        .await
        .expect("build the SyncService");
    sync.start().await;
    // Its keys go up with the first requests; the test waits for them.
    println!("READY {}", client.device_id().unwrap());

    // The test invites once its own client is up: give it time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let room = loop {
        if let Some(room) = client.invited_rooms().into_iter().next() {
            break room;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no invite within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    room.join().await.expect("join the room");
    println!("JOINED {}", room.room_id());

    let timeline = room.timeline().await.expect("the room's timeline");
    let me = client.user_id().unwrap().to_owned();
    let body = wait_until("a decrypted message from someone else", || async {
        timeline.items().await.iter().find_map(|item| {
            let event = item.as_event()?;
            if event.sender() == me {
                return None;
            }
            Some(event.content().as_message()?.body().to_owned())
        })
    })
    .await;
    println!("DECRYPTED {body}");

    timeline
        .send(RoomMessageEventContent::text_plain(ANSWER).into())
        .await
        .expect("send from the timeline");
    let sent = wait_until("the answer accepted by the server", || async {
        timeline.items().await.iter().find_map(|item| {
            let event = item.as_event()?;
            let ours = event.content().as_message()?.body() == ANSWER;
            ours.then(|| event.event_id().map(ToString::to_string))?
        })
    })
    .await;
    println!("SENT {sent}");

    // Until the test is done with us (or a minute, whichever comes first).
    let stdin_closed = tokio::task::spawn_blocking(|| for _ in std::io::stdin().lock().lines() {});
    let _ = tokio::time::timeout(Duration::from_secs(60), stdin_closed).await;
    sync.stop().await;
}
