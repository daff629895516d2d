//! Threads, edits, references and reactions in an encrypted room, read as
//! Element reads them: `/relations` (filters, both directions, pagination,
//! recursion), `/threads`, and the aggregations bundled into
//! `unsigned.m.relations` of `/event`, `/messages`, `/context` and `/sync`
//! — on both backends, with the reader's visibility applied.

use std::time::Duration;

use cloister_tests::{
    assert_refused, both_backends, encode, megolm_content, Backend, Client, TestServer,
};
use serde_json::{json, Value};

const V1: &str = "/_matrix/client/v1";
const V3: &str = "/_matrix/client/v3";

/// Sends a Megolm event relating to `parent` with `rel_type`; returns its id.
async fn send_related(c: &Client, room: &str, txn: &str, rel_type: &str, parent: &str) -> String {
    let mut content = megolm_content("sender-key", &c.device_id);
    content["m.relates_to"] = match rel_type {
        "m.thread" => json!({ "rel_type": "m.thread", "event_id": parent,
            "is_falling_back": true, "m.in_reply_to": { "event_id": parent } }),
        "m.annotation" => json!({ "rel_type": "m.annotation", "event_id": parent, "key": "👍" }),
        other => json!({ "rel_type": other, "event_id": parent }),
    };
    let (status, body) = c.send_event(room, "m.room.encrypted", txn, content).await;
    assert_eq!(status, 200, "{rel_type} to {parent}: {body}");
    body["event_id"].as_str().unwrap().to_owned()
}

fn ids(page: &Value) -> Vec<String> {
    page["chunk"]
        .as_array()
        .unwrap_or_else(|| panic!("no chunk: {page}"))
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every page of `path` (which has no query yet besides `?…` parameters in
/// `query`), `limit` at a time; panics on an event seen twice.
async fn all_pages(c: &Client, path: &str, query: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let mut url = format!("{path}?limit=2{query}");
        if let Some(token) = &from {
            url.push_str(&format!("&from={}", encode(token)));
        }
        let (status, page) = c.get(&url).await;
        assert_eq!(status, 200, "{url}: {page}");
        for id in ids(&page) {
            assert!(!out.contains(&id), "{id} served twice by {path}");
            out.push(id);
        }
        match page["next_batch"].as_str() {
            Some(next) => from = Some(next.to_owned()),
            None => return out,
        }
    }
}

fn relations_of<'a>(event: &'a Value, what: &str) -> &'a Value {
    &event["unsigned"]["m.relations"][what]
}

async fn threads_edits_references_and_reactions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let bob = Client::register(&server.url(), "bob", "pw").await;
    let room = alice.create_room(json!({})).await;
    alice.invite(&room, &bob.user_id).await;
    bob.join(&room).await;
    let since = bob.sync(None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let root = alice.send_encrypted(&room, "root").await;
    let t1 = send_related(&bob, &room, "t1", "m.thread", &root).await;
    let t2 = send_related(&bob, &room, "t2", "m.thread", &root).await;
    let t3 = send_related(&alice, &room, "t3", "m.thread", &root).await;
    let edit = send_related(&alice, &room, "e1", "m.replace", &root).await;
    // Not the sender of the original: never a valid edit, so never bundled.
    let forged = send_related(&bob, &room, "e2", "m.replace", &root).await;
    let reference = send_related(&bob, &room, "ref", "m.reference", &root).await;
    let encrypted_reaction = send_related(&alice, &room, "a1", "m.annotation", &root).await;
    let (status, body) = bob
        .send_event(
            &room,
            "m.reaction",
            "a2",
            json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": root, "key": "🎉" } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let plain_reaction = body["event_id"].as_str().unwrap().to_owned();
    // A reaction to a thread reply: a grandchild of the root.
    let nested = send_related(&bob, &room, "a3", "m.annotation", &t3).await;

    // Bundled aggregations on the root, as bob reads it.
    let (status, event) = bob
        .get(&format!(
            "{V3}/rooms/{}/event/{}",
            encode(&room),
            encode(&root)
        ))
        .await;
    assert_eq!(status, 200, "{event}");
    let thread = relations_of(&event, "m.thread");
    assert_eq!(thread["count"], 3, "{event}");
    assert_eq!(thread["latest_event"]["event_id"], json!(t3));
    assert_eq!(thread["current_user_participated"], true);
    assert_eq!(relations_of(&event, "m.replace")["event_id"], json!(edit));
    assert_eq!(
        relations_of(&event, "m.reference")["chunk"],
        json!([{ "event_id": reference }])
    );
    assert!(
        relations_of(&event, "m.annotation").is_null(),
        "annotations are not bundled since spec v1.7: {event}"
    );

    // /relations: every child, newest first by default, paged 2 at a time.
    let path = format!("{V1}/rooms/{}/relations/{}", encode(&room), encode(&root));
    let children = all_pages(&bob, &path, "").await;
    let expected = [
        &t1,
        &t2,
        &t3,
        &edit,
        &forged,
        &reference,
        &encrypted_reaction,
        &plain_reaction,
    ];
    let mut newest_first: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    newest_first.reverse();
    assert_eq!(children, newest_first);
    let oldest_first = all_pages(&bob, &path, "&dir=f").await;
    assert_eq!(
        oldest_first,
        expected.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
    // Filters by relation type, and by event type: both kinds of reaction.
    assert_eq!(
        all_pages(&bob, &format!("{path}/m.thread"), "").await,
        vec![t3.clone(), t2.clone(), t1.clone()]
    );
    assert_eq!(
        all_pages(&bob, &format!("{path}/m.annotation"), "").await,
        vec![plain_reaction.clone(), encrypted_reaction.clone()]
    );
    assert_eq!(
        all_pages(&bob, &format!("{path}/m.annotation/m.reaction"), "").await,
        vec![plain_reaction.clone()]
    );
    assert_eq!(
        all_pages(&bob, &format!("{path}/m.annotation/m.room.encrypted"), "").await,
        vec![encrypted_reaction.clone()]
    );
    // Recursion reaches the reaction to a thread reply, and says how deep.
    let (_, recursed) = bob.get(&format!("{path}?recurse=true&limit=50")).await;
    assert!(ids(&recursed).contains(&nested), "{recursed}");
    assert_eq!(recursed["recursion_depth"], 3);
    let (_, direct) = bob.get(&format!("{path}?limit=50")).await;
    assert!(!ids(&direct).contains(&nested));
    assert!(direct.get("recursion_depth").is_none());

    // Bob's incremental sync bundles from the batch itself.
    let synced = bob
        .sync_until(Some(&since), Duration::from_secs(10), |r| {
            r["rooms"]["join"][&room]["timeline"]["events"]
                .as_array()
                .is_some_and(|events| events.iter().any(|e| e["event_id"] == json!(nested)))
        })
        .await;
    let timeline = synced["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap();
    let root_in_sync = timeline.iter().find(|e| e["event_id"] == json!(root));
    let root_in_sync = root_in_sync.expect("root in the incremental timeline");
    assert_eq!(relations_of(root_in_sync, "m.thread")["count"], 3);
    assert_eq!(
        relations_of(root_in_sync, "m.replace")["event_id"],
        json!(edit)
    );
    // An initial sync (limited to a few events) reads them from the store.
    let (_, initial) = bob
        .get(&format!(
            "{V3}/sync?filter={}",
            encode(&json!({ "room": { "timeline": { "limit": 20 } } }).to_string())
        ))
        .await;
    let timeline = initial["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap();
    let root_initial = timeline.iter().find(|e| e["event_id"] == json!(root));
    let thread = relations_of(
        root_initial.expect("root in the initial timeline"),
        "m.thread",
    );
    assert_eq!(thread["count"], 3);

    // /messages bundles too.
    let page = bob.messages(&room, 50).await;
    let root_in_page = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_id"] == json!(root))
        .cloned()
        .expect("root in /messages");
    assert_eq!(relations_of(&root_in_page, "m.thread")["count"], 3);

    // A redacted thread reply no longer counts; the latest is the one before.
    let (status, body) = alice
        .put(
            &format!("{V3}/rooms/{}/redact/{}/red1", encode(&room), encode(&t3)),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, event) = bob
        .get(&format!(
            "{V3}/rooms/{}/event/{}",
            encode(&room),
            encode(&root)
        ))
        .await;
    assert_eq!(relations_of(&event, "m.thread")["count"], 2, "{event}");
    assert_eq!(
        relations_of(&event, "m.thread")["latest_event"]["event_id"],
        json!(t2)
    );
    server.stop().await;
}

async fn threads_by_latest_activity(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let bob = Client::register(&server.url(), "bob", "pw").await;
    let room = alice.create_room(json!({})).await;
    alice.invite(&room, &bob.user_id).await;
    bob.join(&room).await;

    let first = alice.send_encrypted(&room, "first").await;
    let second = alice.send_encrypted(&room, "second").await;
    let third = bob.send_encrypted(&room, "third").await;
    send_related(&bob, &room, "r1", "m.thread", &first).await;
    send_related(&alice, &room, "r2", "m.thread", &second).await;
    send_related(&alice, &room, "r3", "m.thread", &third).await;
    // Activity in the first thread makes it the most recent again.
    send_related(&alice, &room, "r4", "m.thread", &first).await;
    // Not a thread: a root with only an edit is not listed.
    send_related(&alice, &room, "e1", "m.replace", &second).await;

    let path = format!("{V1}/rooms/{}/threads", encode(&room));
    assert_eq!(
        all_pages(&alice, &path, "").await,
        vec![first.clone(), third.clone(), second.clone()]
    );
    // Bob replied in `first` and started `third`; he never touched `second`.
    assert_eq!(
        all_pages(&bob, &path, "&include=participated").await,
        vec![first.clone(), third.clone()]
    );
    let (_, page) = alice.get(&format!("{path}?limit=10")).await;
    let summary = &page["chunk"][0]["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(summary["count"], 2, "{page}");
    assert_eq!(summary["current_user_participated"], true);
    assert!(page.get("next_batch").is_none(), "{page}");
    server.stop().await;
}

async fn bad_requests_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let stranger = Client::register(&server.url(), "stranger", "pw").await;
    let room = alice.create_room(json!({})).await;
    let root = alice.send_encrypted(&room, "root").await;
    let elsewhere = stranger.create_room(json!({})).await;
    let relations = format!("{V1}/rooms/{}/relations/{}", encode(&room), encode(&root));
    let threads = format!("{V1}/rooms/{}/threads", encode(&room));

    for (query, what) in [
        ("from=nonsense", "a bad from token"),
        ("to=t-5", "a negative to token"),
        ("dir=sideways", "dir other than b or f"),
        ("limit=-1", "a negative limit"),
    ] {
        assert_refused(
            alice.get(&format!("{relations}?{query}")).await,
            400,
            "M_INVALID_PARAM",
            what,
        );
    }
    for (query, what) in [
        ("from=s1_x", "a bad threads token"),
        (
            "include=everything",
            "include other than all or participated",
        ),
        ("limit=-3", "a negative threads limit"),
    ] {
        assert_refused(
            alice.get(&format!("{threads}?{query}")).await,
            400,
            "M_INVALID_PARAM",
            what,
        );
    }
    let (status, body) = alice.get(&format!("{relations}?recurse=maybe")).await;
    assert_eq!(status, 400, "recurse=maybe: {body}");
    assert!(body["errcode"].is_string(), "{body}");

    assert_refused(
        stranger.get(&relations).await,
        403,
        "M_FORBIDDEN",
        "a non-member reading relations",
    );
    assert_refused(
        stranger.get(&threads).await,
        403,
        "M_FORBIDDEN",
        "a non-member listing threads",
    );
    assert_refused(
        alice
            .get(&format!("{V1}/rooms/{}/relations/$missing", encode(&room)))
            .await,
        404,
        "M_NOT_FOUND",
        "an unknown parent",
    );
    // The stranger's own room does not hold alice's event.
    assert_refused(
        stranger
            .get(&format!(
                "{V1}/rooms/{}/relations/{}",
                encode(&elsewhere),
                encode(&root)
            ))
            .await,
        404,
        "M_NOT_FOUND",
        "a parent from another room",
    );
    // The parent has no children, and a plain reading still works.
    let (status, page) = alice.get(&format!("{relations}?limit=50")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), Vec::<String>::new());
    assert!(page.get("next_batch").is_none(), "{page}");
    server.stop().await;
}

both_backends!(
    relations, threads_edits_references_and_reactions;
    threads, threads_by_latest_activity;
    bad_input, bad_requests_are_refused;
);
