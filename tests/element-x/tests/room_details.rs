//! What Element X shows about a room beyond its messages, as Cloister's
//! sliding sync feeds matrix-sdk: the name of an unnamed room from its
//! `heroes`, who is typing (`typing` extension), the unread badge (counted
//! by the SDK, as the server cannot read encrypted events) and its clearing
//! by a read receipt (`receipts` extension), catching up
//! after the app was in the background (`SyncService` stopped and started
//! again on the same connection), and a room the user was kicked from
//! leaving the list.

use cloister_element_x_tests::{shown_name, wait_until, Cast, RoomListWatcher, WAIT};
use cloister_tests::{both_backends, encode, Backend};
use matrix_sdk::ruma::api::client::receipt::create_receipt::v3::ReceiptType;
use matrix_sdk::RoomState;
use matrix_sdk_ui::room_list_service::filters::new_filter_non_left;
use matrix_sdk_ui::timeline::RoomExt;
use serde_json::json;

const BOB_DISPLAY_NAME: &str = "Bob Builder";

async fn room_details_follow_the_server(backend: Backend) {
    let cast = Cast::new(backend).await;
    let bob_path = format!(
        "/_matrix/client/v3/profile/{}/displayname",
        encode(cast.bob.user_id())
    );
    let (status, body) = cast
        .bob_http
        .put(&bob_path, json!({ "displayname": BOB_DISPLAY_NAME }))
        .await;
    assert_eq!(status, 200, "{body}");
    let sync = cast.start_alice_sync().await;
    let room_list_service = sync.room_list_service();
    let all_rooms = room_list_service.all_rooms().await.unwrap();
    let (diffs, controller) = all_rooms.entries_with_dynamic_adapters(50);
    assert!(controller.set_filter(Box::new(new_filter_non_left())));
    let mut list = RoomListWatcher::new(diffs);

    // A room without a name is called after its other member, whom the
    // server names among the room's heroes.
    let room = cast.room_with_alice("").await;
    let room_id = room.room_id().to_owned();
    list.wait_for("the unnamed room, called after Bob", |list| {
        let named = list
            .room(&room_id)
            .is_some_and(|r| shown_name(r) == BOB_DISPLAY_NAME);
        async move { named.then_some(()) }
    })
    .await;
    assert!(room.name().is_none());
    room_list_service.subscribe_to_rooms(&[&room_id]).await;
    let timeline = room.timeline().await.unwrap();

    // Bob types: Alice sees it.
    let (_guard, mut typing) = room.subscribe_to_typing_notifications();
    let typing_path = format!(
        "/_matrix/client/v3/rooms/{}/typing/{}",
        encode(room_id.as_str()),
        encode(cast.bob.user_id())
    );
    let (status, body) = cast
        .bob_http
        .put(&typing_path, json!({ "typing": true, "timeout": 30000 }))
        .await;
    assert_eq!(status, 200, "{body}");
    let typists = tokio::time::timeout(WAIT, async {
        loop {
            let users = typing.recv().await.expect("typing notifications");
            if !users.is_empty() {
                return users;
            }
        }
    })
    .await
    .expect("Bob's typing never reached Alice");
    assert_eq!(
        typists.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
        vec![cast.bob.user_id()]
    );

    // A message from Bob: unread, and a notification, until Alice reads
    // it; her read receipt comes back through the `receipts` extension.
    let body = "are you there?";
    cast.bob.send_text(room_id.as_str(), body).await.unwrap();
    wait_until("Bob's message in the timeline", || async {
        let items = timeline.items().await;
        items
            .iter()
            .any(|i| {
                i.as_event()
                    .and_then(|e| e.content().as_message())
                    .is_some_and(|m| m.body() == body)
            })
            .then_some(())
    })
    .await;
    wait_until("the unread badge", || {
        let counts = (room.num_unread_messages(), room.num_unread_notifications());
        async move { (counts == (1, 1)).then_some(()) }
    })
    .await;
    assert!(timeline.mark_as_read(ReceiptType::Read).await.unwrap());
    wait_until("the unread badge cleared", || {
        let counts = (room.num_unread_messages(), room.num_unread_notifications());
        async move { (counts == (0, 0)).then_some(()) }
    })
    .await;

    // In the background (the sync stopped), a message arrives; back in
    // the foreground, the same connection catches up.
    sync.stop().await;
    let while_away = "while you were away";
    cast.bob
        .send_text(room_id.as_str(), while_away)
        .await
        .unwrap();
    sync.start().await;
    wait_until("the message sent while away", || async {
        let items = timeline.items().await;
        items
            .iter()
            .any(|i| {
                i.as_event()
                    .and_then(|e| e.content().as_message())
                    .is_some_and(|m| m.body() == while_away)
            })
            .then_some(())
    })
    .await;

    // Bob kicks Alice: the room leaves her list.
    let kick_path = format!("/_matrix/client/v3/rooms/{}/kick", encode(room_id.as_str()));
    let (status, body) = cast
        .bob_http
        .post(
            &kick_path,
            json!({ "user_id": cast.alice_id, "reason": "test" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    list.wait_for("the room gone from the list", |list| {
        let gone = list.room(&room_id).is_none();
        async move { gone.then_some(()) }
    })
    .await;
    assert_eq!(room.state(), RoomState::Left);

    sync.stop().await;
    cast.server.stop().await;
}

both_backends!(
    room_details_follow_the_server,
    room_details_follow_the_server
);
