//! A burst of messages into a crowded room: the push evaluator records
//! their notifications over several transactions (it cuts a batch where
//! its rooms' members add up to more than it records at once), and every
//! member still counts each message exactly once — on both backends.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cloister_tests::{both_backends, Backend, Client, TestServer};
use futures::future::join_all;
use serde_json::json;

/// 12 members × 30 messages: 360 notifications, more than one
/// transaction of the evaluator records.
const MEMBERS: usize = 12;
const MESSAGES: usize = 30;
const WITHIN: Duration = Duration::from_secs(30);

async fn every_member_counts_each_message_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = Client::register(&server.url(), "alice", "pw").await;
    // Joined without an invite: an invite notifies its invitee, and only
    // the messages are counted here.
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    let mut members = Vec::new();
    for i in 1..MEMBERS {
        let member = Client::register(&server.url(), &format!("member{i}"), "pw").await;
        member.join(&room).await;
        members.push(member);
    }

    // Sent together, so they commit close together and the evaluator
    // finds them in one read.
    let txn_ids: Vec<String> = (0..MESSAGES).map(|i| format!("burst{i}")).collect();
    let sent: BTreeSet<String> = join_all(
        txn_ids
            .iter()
            .map(|txn_id| alice.send_encrypted(&room, txn_id)),
    )
    .await
    .into_iter()
    .collect();
    assert_eq!(sent.len(), MESSAGES);

    for member in &members {
        // Initial syncs: each counts what has been evaluated by then, and
        // the count must reach every message and stop there.
        let deadline = Instant::now() + WITHIN;
        let counts = loop {
            let synced = member.sync(None, 0).await;
            let counts = synced["rooms"]["join"][&room]["unread_notifications"].clone();
            if counts["notification_count"] == MESSAGES || Instant::now() > deadline {
                break counts;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            counts,
            json!({ "notification_count": MESSAGES, "highlight_count": 0 }),
            "{}",
            member.user_id
        );
        let (status, list) = member
            .get("/_matrix/client/v3/notifications?limit=100")
            .await;
        assert_eq!(status, 200, "{list}");
        let listed: Vec<String> = list["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["event"]["event_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(listed.len(), MESSAGES, "listed twice or missing: {list}");
        assert_eq!(listed.iter().cloned().collect::<BTreeSet<_>>(), sent);
    }
    // Alice sent them all: nothing for her.
    let (_, own) = alice.get("/_matrix/client/v3/notifications").await;
    assert_eq!(own["notifications"], json!([]));
    server.stop().await;
}

both_backends!(crowded_room_burst, every_member_counts_each_message_once);
