//! Space hierarchies and restricted joins.

use cloister_tests::{assert_refused, both_backends, encode, Backend, Client, TestServer};
use serde_json::{json, Value};

fn child(order: &str) -> Value {
    json!({ "via": ["localhost"], "order": order })
}

/// The room ids of a hierarchy page; panics unless 200.
async fn walk(client: &Client, root: &str, query: &str) -> (Vec<String>, Value) {
    let path = format!(
        "/_matrix/client/v1/rooms/{}/hierarchy?{query}",
        encode(root)
    );
    let (status, page) = client.get(&path).await;
    assert_eq!(status, 200, "{query}: {page}");
    let ids = page["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["room_id"].as_str().unwrap().to_owned())
        .collect();
    (ids, page)
}

async fn spaces_and_restricted_joins(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let alice = Client::register(&url, "alice", "pw").await;
    let bob = Client::register(&url, "bob", "pw").await;
    let carol = Client::register(&url, "carol", "pw").await;

    // Hospital (private space) → Announcements (public), Staff only
    // (restricted to the space), Wards (public sub-space) → Ward 1 (public).
    let space = alice
        .create_room(json!({ "name": "Hospital", "creation_content": { "type": "m.space" } }))
        .await;
    let public = alice
        .create_room(json!({ "name": "Announcements", "preset": "public_chat" }))
        .await;
    let restricted = alice
        .create_room(json!({ "name": "Staff only", "initial_state": [{
            "type": "m.room.join_rules", "state_key": "",
            "content": { "join_rule": "restricted",
                         "allow": [{ "type": "m.room_membership", "room_id": space }] }
        }] }))
        .await;
    let sub = alice
        .create_room(json!({ "name": "Wards", "preset": "public_chat",
                             "creation_content": { "type": "m.space" } }))
        .await;
    let ward = alice
        .create_room(json!({ "name": "Ward 1", "preset": "public_chat" }))
        .await;
    let mut announcements = child("a");
    announcements["suggested"] = json!(true);
    for (parent, kid, content) in [
        (&space, &public, announcements),
        (&space, &restricted, child("b")),
        (&space, &sub, child("c")),
        (&sub, &ward, json!({ "via": ["localhost"] })),
    ] {
        let (status, body) = alice.put_state(parent, "m.space.child", kid, content).await;
        assert_eq!(status, 200, "{body}");
    }
    let parent = json!({ "via": ["localhost"], "canonical": true });
    assert_eq!(
        alice
            .put_state(&restricted, "m.space.parent", &space, parent)
            .await
            .0,
        200
    );
    assert_eq!(alice.invite(&space, &bob.user_id).await.0, 200);
    bob.join(&space).await;

    // Bob sees the whole tree, the restricted room included before he joins.
    let everything = vec![
        space.clone(),
        public.clone(),
        restricted.clone(),
        sub.clone(),
        ward.clone(),
    ];
    let (ids, page) = walk(&bob, &space, "").await;
    assert_eq!(ids, everything);
    assert!(page.get("next_batch").is_none(), "{page}");
    let root = &page["rooms"][0];
    assert_eq!(root["room_type"], json!("m.space"));
    assert_eq!(root["name"], json!("Hospital"));
    assert_eq!(root["num_joined_members"], json!(2));
    let children = root["children_state"].as_array().unwrap();
    assert_eq!(children.len(), 3);
    assert_eq!(children[0]["type"], json!("m.space.child"));
    assert_eq!(children[0]["state_key"], json!(public));
    assert_eq!(children[0]["sender"], json!(alice.user_id));
    assert_eq!(children[0]["content"]["order"], json!("a"));
    assert!(children[0]["origin_server_ts"].is_u64(), "{root}");
    assert_eq!(page["rooms"][2]["join_rule"], json!("restricted"));

    // max_depth, suggested_only, and pages of two.
    assert_eq!(
        walk(&bob, &space, "max_depth=0").await.0,
        vec![space.clone()]
    );
    assert_eq!(
        walk(&bob, &space, "max_depth=1").await.0,
        everything[..4].to_vec()
    );
    let (ids, page) = walk(&bob, &space, "suggested_only=true").await;
    assert_eq!(ids, vec![space.clone(), public.clone()]);
    assert_eq!(
        page["rooms"][0]["children_state"].as_array().unwrap().len(),
        1
    );
    let (mut seen, mut query) = (Vec::new(), "limit=2".to_owned());
    loop {
        let (ids, page) = walk(&bob, &space, &query).await;
        assert!(ids.len() <= 2);
        seen.extend(ids);
        match page["next_batch"].as_str() {
            Some(next) => query = format!("limit=2&from={}", encode(next)),
            None => break,
        }
    }
    assert_eq!(seen, everything);
    let (_, first) = walk(&bob, &space, "limit=2").await;
    let next = encode(first["next_batch"].as_str().unwrap());
    let hierarchy = |room: &str, query: &str| {
        format!(
            "/_matrix/client/v1/rooms/{}/hierarchy?{query}",
            encode(room)
        )
    };
    for (query, what) in [
        (
            format!("limit=2&max_depth=1&from={next}"),
            "from of another request",
        ),
        ("from=h".to_owned(), "bad from"),
        ("from=12".to_owned(), "bad from"),
        ("limit=0".to_owned(), "limit 0"),
        ("limit=abc".to_owned(), "limit abc"),
        ("max_depth=-1".to_owned(), "negative depth"),
        ("suggested_only=maybe".to_owned(), "suggested_only maybe"),
        (
            "limit=99999999999999999999999".to_owned(),
            "limit beyond i64",
        ),
    ] {
        assert_refused(
            bob.get(&hierarchy(&space, &query)).await,
            400,
            "M_INVALID_PARAM",
            what,
        );
    }
    assert_refused(
        bob.get(&hierarchy("space", "")).await,
        400,
        "M_INVALID_PARAM",
        "not a room id",
    );
    assert_refused(
        bob.get(&hierarchy("!nope:localhost", "")).await,
        404,
        "M_NOT_FOUND",
        "unknown",
    );

    // Carol, in no room: not the private space, but the public sub-space.
    assert_refused(
        carol.get(&hierarchy(&space, "")).await,
        403,
        "M_FORBIDDEN",
        "carol, space",
    );
    assert_refused(
        carol.get(&hierarchy(&restricted, "")).await,
        403,
        "M_FORBIDDEN",
        "carol, restricted",
    );
    assert_eq!(
        walk(&carol, &sub, "").await.0,
        vec![sub.clone(), ward.clone()]
    );

    // Restricted join: a space member may join, vouched for by Alice; a
    // stranger may not, not even naming a voucher herself. A member event
    // sent by hand needs a voucher who is a member who may invite.
    let vouched =
        |by: &str| json!({ "membership": "join", "join_authorised_via_users_server": by });
    let (status, body) = bob
        .put_state(
            &restricted,
            "m.room.member",
            &bob.user_id,
            vouched(&carol.user_id),
        )
        .await;
    assert_refused((status, body.clone()), 403, "M_FORBIDDEN", "bad voucher");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("join_authorised_via_users_server"),
        "{message}"
    );
    let (status, body) = bob
        .put_state(
            &restricted,
            "m.room.member",
            &bob.user_id,
            json!({ "membership": "join" }),
        )
        .await;
    assert_refused((status, body.clone()), 403, "M_FORBIDDEN", "bad voucher");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("join_authorised_via_users_server"),
        "{message}"
    );
    assert_eq!(bob.join(&restricted).await, restricted);
    let (_, member) = bob
        .get_state(&restricted, "m.room.member", &bob.user_id)
        .await;
    assert_eq!(member["membership"], json!("join"));
    assert_eq!(
        member["join_authorised_via_users_server"],
        json!(alice.user_id)
    );
    let (status, body) = carol
        .post(
            &format!("/_matrix/client/v3/join/{}", encode(&restricted)),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );
    let forged = json!({ "membership": "join", "join_authorised_via_users_server": alice.user_id });
    let (status, body) = carol
        .put_state(&restricted, "m.room.member", &carol.user_id, forged)
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );
    // Once Bob leaves the space, the restricted room no longer admits him.
    assert_eq!(bob.leave(&restricted).await.0, 200);
    assert_eq!(bob.leave(&space).await.0, 200);
    let (status, body) = bob
        .post(
            &format!("/_matrix/client/v3/join/{}", encode(&restricted)),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );

    // An emptied child event removes the child.
    assert_eq!(
        alice
            .put_state(&space, "m.space.child", &public, json!({}))
            .await
            .0,
        200
    );
    let (ids, page) = walk(&alice, &space, "").await;
    assert_eq!(
        ids,
        vec![space.clone(), restricted.clone(), sub.clone(), ward.clone()]
    );
    assert_eq!(
        page["rooms"][0]["children_state"].as_array().unwrap().len(),
        2
    );
    server.stop().await;
}

both_backends!(
    walks_spaces_and_admits_restricted_joins,
    spaces_and_restricted_joins
);
