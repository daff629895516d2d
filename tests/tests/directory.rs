//! Finding people and rooms on both backends: the user directory (who finds
//! whom, with and without `directory.search_all_users`; deactivated and
//! erased accounts never), the public room directory (publishing, search,
//! pagination, who may publish), space hierarchies and restricted joins,
//! and the errors bad input gets.

use std::collections::BTreeSet;

use cloister_tests::{assert_refused, both_backends, encode, Backend, Client, TestServer};
use serde_json::{json, Value};

const R: &str = "/_matrix/client/v3";

async fn search(client: &Client, body: Value) -> (u16, Value) {
    client
        .post(&format!("{R}/user_directory/search"), body)
        .await
}

/// The user ids a search finds; panics unless 200.
async fn found(client: &Client, term: &str) -> Vec<String> {
    let (status, body) = search(client, json!({ "search_term": term })).await;
    assert_eq!(status, 200, "{body}");
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn set_name(client: &Client, name: &str) {
    let path = format!("{R}/profile/{}/displayname", encode(&client.user_id));
    let (status, body) = client.put(&path, json!({ "displayname": name })).await;
    assert_eq!(status, 200, "{body}");
}

/// Dave (deactivated) and Erin (erased) were in `room` with Alice; the
/// admin who removed them.
async fn gone_users(server: &TestServer, alice: &Client, room: &str) -> (String, String, Client) {
    let url = server.url();
    let admin = server.register_admin("root").await;
    let mut ids = Vec::new();
    for (name, action) in [("dave", "deactivate"), ("erin", "erase")] {
        let user = Client::register(&url, name, "pw").await;
        set_name(&user, &format!("Gone {name}")).await;
        assert_eq!(alice.invite(room, &user.user_id).await.0, 200);
        user.join(room).await;
        let path = format!(
            "/_cloister/admin/v1/users/{}/{action}",
            encode(&user.user_id)
        );
        let (status, body) = admin.post(&path, json!({})).await;
        assert_eq!(status, 200, "{action}: {body}");
        ids.push(user.user_id);
    }
    (ids[0].clone(), ids[1].clone(), admin)
}

async fn user_directory(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let alice = Client::register(&url, "alice", "pw").await;
    let bob = Client::register(&url, "bob.smith", "pw").await;
    let carol = Client::register(&url, "carol", "pw").await;
    set_name(&bob, "Robert Smith").await;
    let room = alice.create_room(json!({ "name": "ward" })).await;
    assert_eq!(alice.invite(&room, &bob.user_id).await.0, 200);
    bob.join(&room).await;

    // A room-mate is found by localpart, display name or a word of either,
    // in any case; a stranger is not.
    for term in ["bob", "ROBERT", "smi", "rob smi", "@bob.sm"] {
        assert_eq!(
            found(&alice, term).await,
            vec![bob.user_id.clone()],
            "{term}"
        );
    }
    assert!(found(&alice, "obert").await.is_empty());
    assert!(found(&alice, "carol").await.is_empty());
    assert!(found(&carol, "bob").await.is_empty());
    let (status, body) = search(&alice, json!({ "search_term": "bob" })).await;
    assert_eq!(status, 200);
    assert_eq!(body["limited"], json!(false));
    assert_eq!(body["results"][0]["display_name"], json!("Robert Smith"));

    // Someone in a published room is found by everyone.
    let lobby = carol
        .create_room(json!({ "visibility": "public", "preset": "public_chat" }))
        .await;
    assert_eq!(found(&alice, "carol").await, vec![carol.user_id.clone()]);
    assert_eq!(carol.leave(&lobby).await.0, 200);
    assert!(found(&alice, "carol").await.is_empty());

    // Deactivated and erased room-mates are not.
    let (dave, erin, _) = gone_users(&server, &alice, &room).await;
    for term in ["dave", "erin", "gone"] {
        let hits = found(&alice, term).await;
        assert!(
            !hits.contains(&dave) && !hits.contains(&erin),
            "{term}: {hits:?}"
        );
    }

    // limit and limited.
    for i in 0..3 {
        let staff = Client::register(&url, &format!("staff{i}"), "pw").await;
        assert_eq!(alice.invite(&room, &staff.user_id).await.0, 200);
        staff.join(&room).await;
        if i == 2 {
            set_name(&staff, "Zoë Ärger").await;
        }
    }
    // Beyond ASCII, case-insensitively.
    for term in ["ÄRG", "zoë", "ZOË ä"] {
        assert_eq!(
            found(&alice, term).await,
            vec!["@staff2:localhost".to_owned()],
            "{term}"
        );
    }
    let (status, body) = search(&alice, json!({ "search_term": "staff", "limit": 2 })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 2);
    assert_eq!(body["limited"], json!(true));
    let (_, body) = search(&alice, json!({ "search_term": "staff", "limit": 1000 })).await;
    assert_eq!(body["results"].as_array().unwrap().len(), 3);
    assert_eq!(body["limited"], json!(false));

    // Bad input.
    for (body, status, code) in [
        (json!({ "search_term": 5 }), 400, "M_BAD_JSON"),
        (json!({}), 400, "M_BAD_JSON"),
        (
            json!({ "search_term": "a", "limit": "3" }),
            400,
            "M_BAD_JSON",
        ),
        (
            json!({ "search_term": "a", "limit": -1 }),
            400,
            "M_INVALID_PARAM",
        ),
        (
            json!({ "search_term": "a", "limit": 0 }),
            400,
            "M_INVALID_PARAM",
        ),
        (
            json!({ "search_term": "x".repeat(300) }),
            400,
            "M_INVALID_PARAM",
        ),
    ] {
        assert_refused(
            search(&alice, body.clone()).await,
            status,
            code,
            &body.to_string(),
        );
    }
    let (status, _, body) = alice
        .request_bytes(
            reqwest::Method::POST,
            &format!("{R}/user_directory/search"),
            Some("application/json"),
            br#"{"search_term": "a", "limit": 100000000000000000000}"#.to_vec(),
        )
        .await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_refused((status, body), 400, "M_BAD_JSON", "limit beyond 2^53");
    server.stop().await;
}

async fn search_all_users(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.directory.search_all_users = true;
        c.rate_limit.enabled = true;
        c.rate_limit.per_second = 1000.0;
        c.rate_limit.burst = 1000.0;
        c.directory.search_burst = 8.0;
        c.directory.search_per_second = 0.01;
    })
    .await;
    let url = server.url();
    let alice = Client::register(&url, "alice", "pw").await;
    let carol = Client::register(&url, "carol", "pw").await;
    let room = alice.create_room(json!({})).await;
    // A stranger is found now; the gone and the server's own user are not.
    assert_eq!(found(&alice, "carol").await, vec![carol.user_id.clone()]);
    let (dave, erin, admin) = gone_users(&server, &alice, &room).await;
    for term in ["dave", "erin", "gone", "cloister"] {
        let hits = found(&alice, term).await;
        assert!(
            !hits.contains(&dave) && !hits.contains(&erin),
            "{term}: {hits:?}"
        );
        assert!(hits.iter().all(|h| !h.contains("cloister")), "{hits:?}");
    }
    // 5 searches so far; the per-user bucket holds 8.
    for _ in 0..3 {
        found(&alice, "carol").await;
    }
    let (status, body) = search(&alice, json!({ "search_term": "carol" })).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (429, Some("M_LIMIT_EXCEEDED")),
        "{body}"
    );
    assert!(body["retry_after_ms"].is_u64(), "{body}");
    assert_eq!(found(&carol, "alice").await, vec![alice.user_id.clone()]);
    // The record of processing says whom the directory shows.
    let (status, record) = admin
        .get("/_cloister/admin/v1/report/processing?format=json")
        .await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(
        record["security_measures"]["directory_finds_everyone"],
        json!(true)
    );
    server.stop().await;
}

fn room_ids(page: &Value) -> Vec<String> {
    page["chunk"]
        .as_array()
        .unwrap_or_else(|| panic!("no chunk: {page}"))
        .iter()
        .map(|r| r["room_id"].as_str().unwrap().to_owned())
        .collect()
}

fn visibility_path(room: &str) -> String {
    format!("{R}/directory/list/room/{}", encode(room))
}

async fn room_directory(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let alice = Client::register(&url, "alice", "pw").await;
    let bob = Client::register(&url, "bob", "pw").await;
    let carol = Client::register(&url, "carol", "pw").await;

    // createRoom's visibility publishes; the entry carries the room's state.
    let cardio = alice
        .create_room(json!({
            "visibility": "public", "preset": "public_chat", "name": "Cardiology Team",
            "topic": "Heart matters", "room_alias_name": "cardio"
        }))
        .await;
    let private = alice
        .create_room(json!({ "name": "Cardiology secrets" }))
        .await;
    let (status, page) = carol.get(&format!("{R}/publicRooms")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(room_ids(&page), vec![cardio.clone()]);
    let entry = &page["chunk"][0];
    assert_eq!(entry["name"], json!("Cardiology Team"));
    assert_eq!(entry["topic"], json!("Heart matters"));
    assert_eq!(entry["canonical_alias"], json!("#cardio:localhost"));
    assert_eq!(entry["num_joined_members"], json!(1));
    assert_eq!(entry["join_rule"], json!("public"));
    assert_eq!(entry["world_readable"], json!(false));
    assert_eq!(entry["guest_can_join"], json!(false));
    assert_eq!(page["total_room_count_estimate"], json!(1));
    assert!(page.get("next_batch").is_none(), "{page}");

    // Who may publish: not a stranger, not a member without power.
    assert_eq!(alice.invite(&private, &bob.user_id).await.0, 200);
    bob.join(&private).await;
    for (who, what) in [(&carol, "stranger"), (&bob, "member at level 0")] {
        let (status, body) = who
            .put(
                &visibility_path(&private),
                json!({ "visibility": "public" }),
            )
            .await;
        assert_eq!(
            (status, body["errcode"].as_str()),
            (403, Some("M_FORBIDDEN")),
            "{what}: {body}"
        );
    }
    let (_, v) = carol.get(&visibility_path(&private)).await;
    assert_eq!(v, json!({ "visibility": "private" }));
    let (status, _) = alice
        .put(
            &visibility_path(&private),
            json!({ "visibility": "public" }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, v) = carol.get(&visibility_path(&private)).await;
    assert_eq!(v, json!({ "visibility": "public" }));

    // Search by term, then unpublish.
    let term = |t: &str| json!({ "filter": { "generic_search_term": t } });
    let (_, page) = carol
        .post(&format!("{R}/publicRooms"), term("SECRETS"))
        .await;
    assert_eq!(room_ids(&page), vec![private.clone()]);
    let (_, page) = carol.post(&format!("{R}/publicRooms"), term("heart")).await;
    assert_eq!(room_ids(&page), vec![cardio.clone()]);
    let (_, page) = carol
        .post(&format!("{R}/publicRooms"), term("cardiology"))
        .await;
    assert_eq!(room_ids(&page).len(), 2);
    assert_eq!(room_ids(&page)[0], private, "more members first: {page}");
    assert_eq!(
        alice
            .put(
                &visibility_path(&private),
                json!({ "visibility": "private" })
            )
            .await
            .0,
        200
    );
    let (_, page) = carol
        .post(&format!("{R}/publicRooms"), term("secrets"))
        .await;
    assert!(room_ids(&page).is_empty(), "{page}");

    // Five published rooms (one a space) over pages of two: each once.
    let mut published = BTreeSet::from([cardio.clone()]);
    for i in 0..3 {
        published.insert(
            bob.create_room(json!({ "visibility": "public", "name": format!("room {i}") }))
                .await,
        );
    }
    let space = bob
        .create_room(json!({ "visibility": "public", "creation_content": { "type": "m.space" } }))
        .await;
    published.insert(space.clone());
    let (mut seen, mut since, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let mut body = json!({ "limit": 2 });
        if let Some(s) = &since {
            body["since"] = json!(s);
        }
        let (status, page) = carol.post(&format!("{R}/publicRooms"), body).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(room_ids(&page));
        pages += 1;
        match page["next_batch"].as_str() {
            Some(next) => since = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), published);
    let (_, first) = carol.get(&format!("{R}/publicRooms?limit=2")).await;
    let next = first["next_batch"].as_str().unwrap();
    let (status, second) = carol
        .get(&format!("{R}/publicRooms?limit=2&since={}", encode(next)))
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(room_ids(&second), seen[2..4].to_vec());

    // Room types: a space, and rooms without a type.
    let types = |t: Value| json!({ "filter": { "room_types": t } });
    let (_, page) = carol
        .post(&format!("{R}/publicRooms"), types(json!(["m.space"])))
        .await;
    assert_eq!(room_ids(&page), vec![space.clone()]);
    assert_eq!(page["chunk"][0]["room_type"], json!("m.space"));
    let (_, page) = carol
        .post(&format!("{R}/publicRooms"), types(json!([null])))
        .await;
    assert_eq!(room_ids(&page).len(), 4);
    let (_, page) = carol
        .post(&format!("{R}/publicRooms"), types(json!([])))
        .await;
    let (status, all) = carol.get(&format!("{R}/publicRooms?limit=100000")).await;
    assert_eq!(
        (status, room_ids(&all).len()),
        (200, 5),
        "a huge limit is capped: {all}"
    );
    assert_eq!(room_ids(&page).len(), 5, "an empty list filters nothing");

    // Bad input.
    let cases = [
        (
            carol.get(&format!("{R}/publicRooms?since=garbage")).await,
            "bad since",
        ),
        (
            carol.get(&format!("{R}/publicRooms?limit=abc")).await,
            "limit abc",
        ),
        (
            carol.get(&format!("{R}/publicRooms?limit=-2")).await,
            "limit -2",
        ),
        (
            carol
                .get(&format!("{R}/publicRooms?limit=99999999999999999999"))
                .await,
            "limit beyond i64",
        ),
        (
            carol
                .get(&format!("{R}/publicRooms?server=elsewhere.org"))
                .await,
            "other server",
        ),
        (
            carol
                .post(&format!("{R}/publicRooms"), json!({ "since": "p!!" }))
                .await,
            "bad since",
        ),
        (
            carol.get(&visibility_path("not-a-room")).await,
            "not a room id",
        ),
        (
            alice
                .put(&visibility_path(&cardio), json!({ "visibility": "open" }))
                .await,
            "unknown visibility",
        ),
    ];
    for (answer, what) in cases {
        assert_refused(answer, 400, "M_INVALID_PARAM", what);
    }
    for (answer, what) in [
        (
            carol
                .post(&format!("{R}/publicRooms"), json!({ "limit": "2" }))
                .await,
            "limit string",
        ),
        (
            carol
                .post(
                    &format!("{R}/publicRooms"),
                    json!({ "filter": { "room_types": "m.space" } }),
                )
                .await,
            "room_types string",
        ),
        (
            alice
                .put(&visibility_path(&cardio), json!({ "visibility": 1 }))
                .await,
            "visibility 1",
        ),
    ] {
        assert_refused(answer, 400, "M_BAD_JSON", what);
    }
    assert_refused(
        carol.get(&visibility_path("!nope:localhost")).await,
        404,
        "M_NOT_FOUND",
        "unknown room",
    );
    let (status, _) = Client::anonymous(&url)
        .get(&format!("{R}/publicRooms"))
        .await;
    assert_eq!(status, 401);
    server.stop().await;
}

both_backends!(
    finds_room_mates_not_strangers, user_directory;
    finds_everyone_when_configured, search_all_users;
    publishes_and_lists_rooms, room_directory;
);

#[path = "directory/spaces.rs"]
mod spaces;
