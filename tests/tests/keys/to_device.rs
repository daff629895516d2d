//! Send-to-device messages.

use cloister_tests::{errcode, Backend, Client, TestServer};
use serde_json::{json, Value};

use crate::common::{next_batch, register, token, PW, WAIT};

// ----- send-to-device --------------------------------------------------------

fn to_device_events(sync: &Value) -> Vec<Value> {
    sync["to_device"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

pub(crate) async fn to_device_flow(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let alice = register(&url, "alice").await;
    let alice2 = Client::login(&url, "alice", PW, Some("ALICE2")).await;
    let bob = register(&url, "bob").await;
    let a1_tok = token(&alice).await;
    let a2_tok = token(&alice2).await;
    let store = &server.state().store;

    // `*` is every device of Alice; an unknown device and a remote user are
    // dropped silently. A retry of the transaction sends nothing again.
    let msgs = json!({"messages": {&alice.user_id: {"*": {"c": 1}, "GONE": {"c": 2}}, "@x:elsewhere": {"D": {}}}});
    let before = store.current_pos().await.unwrap();
    let (s, r) = bob
        .put("/_matrix/client/v3/sendToDevice/m.test/t1", msgs.clone())
        .await;
    assert_eq!((s, r), (200, json!({})));
    let (s, _) = bob
        .put("/_matrix/client/v3/sendToDevice/m.test/t1", msgs.clone())
        .await;
    assert_eq!(s, 200);
    let after = store.current_pos().await.unwrap();
    assert_eq!(after - before, 2, "one message per device of Alice");
    let expected = json!({"sender": bob.user_id, "type": "m.test", "content": {"c": 1}});
    let got = alice2
        .sync_until(Some(&a2_tok), WAIT, |s| !to_device_events(s).is_empty())
        .await;
    assert_eq!(to_device_events(&got), vec![expected.clone()], "{got}");
    let got1 = alice
        .sync_until(Some(&a1_tok), WAIT, |s| !to_device_events(s).is_empty())
        .await;
    assert_eq!(to_device_events(&got1), vec![expected.clone()], "{got1}");
    // ALICE2 acknowledges by syncing from the token that delivered it.
    let acked = alice2.sync(Some(&next_batch(&got)), 0).await;
    assert!(to_device_events(&acked).is_empty(), "{acked}");
    let a2_tok = next_batch(&acked);

    // The same transaction id from another device is a new transaction.
    let bob2 = Client::login(&url, "bob", PW, Some("BOB2")).await;
    let (s, _) = bob2
        .put("/_matrix/client/v3/sendToDevice/m.test/t1", msgs.clone())
        .await;
    assert_eq!(s, 200);
    assert_eq!(store.current_pos().await.unwrap() - after, 2);
    let got = alice2
        .sync_until(Some(&a2_tok), WAIT, |s| !to_device_events(s).is_empty())
        .await;
    assert_eq!(to_device_events(&got), vec![expected], "{got}");
    let (s, r) = bob
        .put(
            "/_matrix/client/v3/sendToDevice/m.test/t2",
            json!({"messages": {&alice.user_id: {"*": "str"}}}),
        )
        .await;
    assert_eq!((s, errcode(&r)), (400, Some("M_BAD_JSON")), "{r}");

    server.stop().await;
}
