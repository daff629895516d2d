//! A complete Cloister SDK app: log in (or restore the stored session),
//! keep syncing in the background, print decrypted messages as they
//! arrive, create an encrypted room, send a text and a file, read history,
//! and download an attachment.
//!
//! ```text
//! CLOISTER_HOMESERVER=http://127.0.0.1:8008 CLOISTER_USER=alice \
//! CLOISTER_PASSWORD=... CLOISTER_STORE_PASSPHRASE=... \
//! CLOISTER_INVITE=@bob:example.org cargo run -p cloister-sdk --example quickstart
//! ```

use std::sync::Arc;
use std::time::Duration;

use cloister_sdk::client::{Client, CreateRoom, Direction, Encryption};
use cloister_sdk::store::{SqliteStore, StateStore};
use futures::StreamExt;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("set {name}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. The encrypted store: keys, sessions, sync position, rooms.
    let store: Arc<dyn StateStore> = Arc::new(
        SqliteStore::open("quickstart-store.db", &env("CLOISTER_STORE_PASSPHRASE")).await?,
    );

    // 2. Restore the device saved in the store, or log in as a new one.
    let client = match Client::restore(store.clone()).await? {
        Some(client) => client,
        None => {
            Client::login(
                &env("CLOISTER_HOMESERVER"),
                &env("CLOISTER_USER"),
                &env("CLOISTER_PASSWORD"),
                store,
                Some("quickstart"),
            )
            .await?
        }
    };
    println!("{} on device {}", client.user_id(), client.device_id());
    println!("fingerprint {}", client.fingerprint().await);

    // 3. Decrypted events, as a Stream; subscribe before syncing.
    let mut events = Box::pin(client.event_stream());
    let printer = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match &event.encryption {
                Encryption::Undecryptable { reason, .. } => {
                    println!("{}: unable to decrypt: {reason}", event.sender)
                }
                _ => println!("{}: {}", event.sender, event.body().unwrap_or("")),
            }
        }
    });

    // 4. Catch up once, then keep syncing in the background.
    client.sync_once(Duration::ZERO).await?;
    let sync = client.spawn_sync_loop(Duration::from_secs(30));

    // 5. An encrypted room; room keys go to every device of every member.
    let room = client
        .create_room(&CreateRoom {
            name: Some("quickstart".into()),
            invite: std::env::var("CLOISTER_INVITE").into_iter().collect(),
            ..Default::default()
        })
        .await?;
    client.send_text(&room, "hello, encrypted world").await?;
    let file_event = client
        .send_file(&room, "hello.txt", "text/plain", b"attachment bytes")
        .await?;

    // 6. History, decrypted; attachments are downloaded and decrypted.
    let page = client
        .messages(&room, None, Direction::Backward, 20)
        .await?;
    for event in page.events.iter().rev() {
        if let Some(file) = event.encrypted_file() {
            let bytes = client.download_attachment(&file).await?;
            println!("{} is a {}-byte file", event.event_id, bytes.len());
        }
    }
    assert!(page.events.iter().any(|e| e.event_id == file_event));

    // 7. Devices: the server's list, and the keys the crypto core holds.
    for device in client.devices().await? {
        println!("device {} {:?}", device.device_id, device.display_name);
    }

    tokio::time::sleep(Duration::from_secs(5)).await;
    sync.stop().await;
    printer.abort();
    // client.logout().await?;  // deletes the device and wipes the store
    Ok(())
}
