//! `recovery setup|restore`: the recovery key that brings history and
//! trust to a new device (secret storage and key backup).

use std::time::Duration;

use cloister_sdk::client::Client;

use crate::{fail, secret};

/// `recovery setup`: prints the recovery key, once; the user keeps it.
pub(crate) async fn setup(client: &Client, passphrase: Option<String>) -> Result<(), String> {
    if !client.has_cross_signing_keys().await {
        return Err(
            "this device holds no cross-signing keys: run `cross-signing setup` first (or `recovery restore` on a new device)"
                .into(),
        );
    }
    let key = client
        .setup_recovery(passphrase.as_deref())
        .await
        .map_err(fail)?;
    println!("recovery key: {}", key.as_str());
    println!("Write it down and keep it safe: with it, a new device of yours reads your history and is trusted.");
    Ok(())
}

/// `recovery restore`: the key from the argument, the environment, or a
/// prompt (never echoed).
pub(crate) async fn restore(client: &Client, key: Option<String>) -> Result<(), String> {
    let key = secret(
        key,
        "Recovery key (or passphrase): ",
        "recovery key (--key or CLOISTER_RECOVERY_KEY)",
    )?;
    let report = client.recover(&key).await.map_err(fail)?;
    // Events that waited for these keys decrypt with the next sync.
    client.sync_once(Duration::ZERO).await.map_err(fail)?;
    println!(
        "restored {} room keys from backup {}{}",
        report.keys.imported,
        report.backup_version.as_deref().unwrap_or("(none)"),
        if report.keys.failed > 0 {
            format!(" ({} did not decrypt)", report.keys.failed)
        } else {
            String::new()
        }
    );
    if report.cross_signing {
        println!("cross-signing keys restored: this device is trusted");
    }
    Ok(())
}
