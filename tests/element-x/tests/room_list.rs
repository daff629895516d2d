//! Element X's room list on Cloister: matrix-sdk-ui's `SyncService` and
//! `RoomListService` over simplified sliding sync.
//!
//! - The rooms a user is in and is invited to appear, with their names and
//!   inviters, and follow new messages: the room with the newest message
//!   moves to the top, showing that message (decrypted) as its latest
//!   event. Alice's own room there is made by another of her devices over
//!   plain HTTP, so it can only reach matrix-sdk through sliding sync.
//! - A chat Element X starts (`create_dm`: an encrypted, direct room)
//!   works with Cloister's SDK on the other end, and a second Element X
//!   login of the same user finds it as a direct chat (`m.direct` through
//!   the `account_data` extension).
//!
//! Alice uses matrix-sdk; Bob uses Cloister's own SDK, which encrypts
//! everything it sends.

use cloister_element_x_tests::{
    element_x_client, receive_message, shown_name, wait_until, Cast, RoomListWatcher,
};
use cloister_sdk::client::{CreateRoom, Encryption};
use cloister_tests::{both_backends, Backend};
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::{OwnedRoomId, OwnedUserId};
use matrix_sdk::RoomState;
use matrix_sdk_ui::room_list_service::filters::new_filter_non_left;
use matrix_sdk_ui::room_list_service::RoomListItem;
use matrix_sdk_ui::timeline::{LatestEventValue, RoomExt};
use serde_json::json;

/// The body of the room's latest event as the room list shows it, if it is
/// a message from the server.
async fn latest_message(item: &RoomListItem) -> Option<String> {
    match item.latest_event().await {
        LatestEventValue::Remote { content, .. } => {
            content.as_message().map(|m| m.body().to_owned())
        }
        _ => None,
    }
}

async fn rooms_appear_and_follow_new_messages(backend: Backend) {
    let cast = Cast::new(backend).await;
    let (alice, bob) = (&cast.alice, &cast.bob);

    // Before Element X starts: a room of Alice's, made on another device,
    // and two invites from Bob.
    let notes: OwnedRoomId = cast
        .alice_http
        .create_room(json!({ "name": "Alice's notes" }))
        .await
        .try_into()
        .unwrap();
    let mut bob_rooms = Vec::new();
    for name in ["Bob's first", "Bob's second"] {
        let room = bob
            .create_room(&CreateRoom {
                name: Some(name.into()),
                invite: vec![cast.alice_id.clone()],
                ..Default::default()
            })
            .await
            .unwrap();
        bob_rooms.push(OwnedRoomId::try_from(room).unwrap());
    }
    let (first, second) = (bob_rooms[0].clone(), bob_rooms[1].clone());

    let sync = cast.start_alice_sync().await;
    let room_list_service = sync.room_list_service();
    let all_rooms = room_list_service.all_rooms().await.unwrap();
    let (diffs, controller) = all_rooms.entries_with_dynamic_adapters(50);
    assert!(controller.set_filter(Box::new(new_filter_non_left())));
    let mut list = RoomListWatcher::new(diffs);

    // The three rooms appear: Alice's joined, Bob's as invites, each with
    // its name (matrix-sdk lists a room as soon as it sees it and fills in
    // what the response says of it a moment later, so this waits for both).
    let expected = [
        (&notes, RoomState::Joined, "Alice's notes"),
        (&first, RoomState::Invited, "Bob's first"),
        (&second, RoomState::Invited, "Bob's second"),
    ];
    list.wait_for("Alice's room and Bob's two invites, named", |list| {
        let ready = expected.iter().all(|(id, state, name)| {
            list.room(id)
                .is_some_and(|r| r.state() == *state && shown_name(r) == *name)
        });
        async move { ready.then_some(()) }
    })
    .await;
    assert_eq!(list.room_ids().len(), 3, "{:?}", list.room_ids());
    for room in [&first, &second] {
        let invite = list.room(room).unwrap().invite_details().await.unwrap();
        assert_eq!(invite.inviter_id.as_str(), bob.user_id(), "{room}");
    }

    // Alice accepts both; the list shows them joined.
    for room in [&first, &second] {
        alice.get_room(room).unwrap().join().await.unwrap();
    }
    list.wait_for("both of Bob's rooms joined", |list| {
        let joined = [&first, &second].iter().all(|id| {
            list.room(id)
                .is_some_and(|r| r.state() == RoomState::Joined)
        });
        async move { joined.then_some(()) }
    })
    .await;
    // As Element X does for the rooms on screen: subscribe, which also
    // follows their latest events.
    room_list_service
        .subscribe_to_rooms(&[&notes, &first, &second])
        .await;

    // A message from Bob in his first room moves it to the top and is its
    // latest event, decrypted; then one in the second moves that above.
    for (room, other, body) in [
        (&first, &second, "news in the first room"),
        (&second, &first, "news in the second room"),
    ] {
        bob.send_text(room.as_str(), body).await.unwrap();
        list.wait_for(&format!("{body:?} on top of the list"), |list| {
            let top = list.room_ids().first() == Some(room);
            let item = list.room(room).filter(|_| top).cloned();
            async move {
                let latest = latest_message(&item?).await;
                (latest.as_deref() == Some(body)).then_some(())
            }
        })
        .await;
        assert_eq!(
            list.room_ids(),
            vec![room.clone(), other.clone(), notes.clone()]
        );
        let stamp = |id: &OwnedRoomId| {
            let stamp = list.room(id).unwrap().recency_stamp();
            u64::from(stamp.expect("the server sends every room's bump_stamp"))
        };
        assert!(
            stamp(room) > stamp(other),
            "bump_stamp of {room} did not move"
        );
    }

    sync.stop().await;
    cast.server.stop().await;
}

async fn element_x_starts_a_chat(backend: Backend) {
    let cast = Cast::new(backend).await;
    let (alice, bob) = (&cast.alice, &cast.bob);
    let bob_id = OwnedUserId::try_from(bob.user_id()).unwrap();
    let sync = cast.start_alice_sync().await;

    // "Start chat" with Bob: an encrypted direct room, Bob invited.
    let room = alice.create_dm(&bob_id).await.unwrap();
    let room_id = room.room_id().to_owned();
    wait_until(
        "the chat marked direct (m.direct, back through sync)",
        || {
            let room = room.clone();
            async move { room.is_direct().await.ok()?.then_some(()) }
        },
    )
    .await;
    wait_until("Bob's SDK to get the invite", || async {
        let summary = bob
            .sync_once(std::time::Duration::from_millis(200))
            .await
            .ok()?;
        summary
            .invites
            .iter()
            .any(|i| i == room_id.as_str())
            .then_some(())
    })
    .await;
    bob.join(room_id.as_str()).await.unwrap();
    wait_until("Bob joined, as Alice's sliding sync tells", || {
        let count = room.joined_members_count();
        async move { (count == 2).then_some(()) }
    })
    .await;

    let timeline = room.timeline().await.unwrap();
    let body = "hello from the chat Element X started";
    timeline
        .send(RoomMessageEventContent::text_plain(body).into())
        .await
        .unwrap();
    let received = receive_message(bob, body).await;
    assert!(
        matches!(received.encryption, Encryption::Decrypted { .. }),
        "{:?}",
        received.encryption
    );

    // Another Element X login of Alice's: the room is a direct chat there
    // too, from the `m.direct` Alice's first device stored.
    let second = element_x_client(&cast.server.url(), &cast.alice_name).await;
    let second_sync = matrix_sdk_ui::sync_service::SyncService::builder(second.clone())
        .build()
        .await
        .unwrap();
    second_sync.start().await;
    wait_until("the chat, direct, on Alice's second device", || {
        let room = second.get_room(&room_id);
        async move {
            let room = room.filter(|r| r.state() == RoomState::Joined)?;
            room.is_direct().await.ok()?.then_some(())
        }
    })
    .await;

    second_sync.stop().await;
    sync.stop().await;
    cast.server.stop().await;
}

both_backends!(
    rooms_appear_and_follow_new_messages, rooms_appear_and_follow_new_messages;
    element_x_starts_a_chat, element_x_starts_a_chat;
);
