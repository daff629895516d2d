//! Clients that hang up while their write is in flight: the server drops the
//! request's future wherever it happens to be (before BEGIN, between BEGIN
//! and the transaction guard, mid-statement, mid-COMMIT). None of that may
//! leave a pooled connection inside a transaction; afterwards ordinary
//! writes succeed and what was written before is intact.

use std::time::Duration;

use cloister_tests::{both_backends, encode, megolm_content, Backend, Client, TestServer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Requests per hanging-up client task, and how many such tasks run at once:
/// concurrency is what makes the cancellation points vary.
const ROUNDS: usize = 40;
const TASKS: usize = 8;

async fn hung_up_writes_leave_no_open_transaction(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = Client::register(&server.url(), "alice", "alice-pw").await;
    let bob = Client::register(&server.url(), "bob", "bob-pw").await;
    let room = alice.create_room(json!({ "invite": [bob.user_id] })).await;
    let before = alice.send_encrypted(&room, "before").await;
    let settings = format!(
        "/_matrix/client/v3/user/{}/account_data/org.example.settings",
        encode(&alice.user_id)
    );
    assert_eq!(
        alice.put(&settings, json!({ "theme": "dark" })).await.0,
        200
    );

    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let writes = Writes {
            addr: server.addr().to_string(),
            token: alice.access_token.clone(),
            user_id: alice.user_id.clone(),
            device_id: alice.device_id.clone(),
            room_id: room.clone(),
            bob: bob.user_id.clone(),
        };
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(0x5eed_0000 + task as u64);
            for round in 0..ROUNDS {
                let request = writes.request(task * ROUNDS + round, &mut rng);
                let hang_up_after = Duration::from_micros(rng.gen_range(0..=4_000));
                send_and_hang_up(&writes.addr, &request, hang_up_after).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("a hanging-up client task panicked");
    }

    // Every kind of write works through an ordinary client…
    for i in 0..5 {
        alice.send_encrypted(&room, &format!("after-{i}")).await;
    }
    let (status, body) = alice
        .put(
            &format!(
                "/_matrix/client/v3/sendToDevice/m.room.encrypted/after-{}",
                backend
            ),
            json!({ "messages": { &bob.user_id: { "*": olm_content() } } }),
        )
        .await;
    assert_eq!(status, 200, "to-device after the hang-ups: {body}");
    let second_room = bob.create_room(json!({})).await;
    bob.send_encrypted(&second_room, "bob-after").await;
    let (status, body) = alice.put(&settings, json!({ "theme": "light" })).await;
    assert_eq!(status, 200, "account data after the hang-ups: {body}");

    // …and what was written before the hang-ups is still there.
    let (status, data) = alice.get(&settings).await;
    assert_eq!(status, 200, "{data}");
    assert_eq!(data["theme"], "light");
    let messages = alice.messages(&room, 1000).await;
    let ids: Vec<&str> = messages["chunk"]
        .as_array()
        .expect("chunk is an array")
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert!(
        ids.contains(&before.as_str()),
        "the message sent before the hang-ups is gone"
    );
    server.stop().await;
}

both_backends!(hung_up_writes, hung_up_writes_leave_no_open_transaction);

/// What one hanging-up client needs to build its requests.
struct Writes {
    addr: String,
    token: String,
    user_id: String,
    device_id: String,
    room_id: String,
    bob: String,
}

impl Writes {
    /// A handwritten HTTP/1.1 write request, a different kind each time:
    /// message sends, room creation, account data and to-device messages
    /// take different paths through the store.
    fn request(&self, n: usize, rng: &mut StdRng) -> Vec<u8> {
        let txn = format!("hangup-{n}");
        let (method, path, body): (&str, String, Value) = match rng.gen_range(0..4) {
            0 => (
                "POST",
                "/_matrix/client/v3/createRoom".into(),
                json!({ "name": txn }),
            ),
            1 => (
                "PUT",
                format!(
                    "/_matrix/client/v3/user/{}/account_data/org.example.n{}",
                    encode(&self.user_id),
                    n % 7
                ),
                json!({ "n": n }),
            ),
            2 => (
                "PUT",
                format!("/_matrix/client/v3/sendToDevice/m.room.encrypted/{txn}"),
                json!({ "messages": { &self.bob: { "*": olm_content() } } }),
            ),
            _ => (
                "PUT",
                format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.encrypted/{txn}",
                    encode(&self.room_id)
                ),
                megolm_content("c2VuZGVyIGtleQ", &self.device_id),
            ),
        };
        let body = body.to_string();
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            self.token,
            body.len()
        )
        .into_bytes()
    }
}

fn olm_content() -> Value {
    json!({
        "algorithm": "m.olm.v1.curve25519-aes-sha2",
        "sender_key": "c2VuZGVyIGtleQ",
        "ciphertext": { "x": { "type": 0, "body": "AwoA" } },
    })
}

/// Writes `request` and closes the socket `after` later, without reading.
async fn send_and_hang_up(addr: &str, request: &[u8], after: Duration) {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the test server");
    stream.write_all(request).await.expect("write the request");
    if !after.is_zero() {
        tokio::time::sleep(after).await;
    }
    drop(stream);
}
