//! The purge job: deletes what retention has expired — message events,
//! the files they carried, undelivered to-device messages, key backups and
//! inactive devices — for real (rows deleted, files unlinked), skipping
//! whatever a legal hold covers.
//!
//! It runs on a schedule (`retention.purge_interval`) and on demand (admin
//! API, `cloister admin purge`). Every run, successful or not, ends with a
//! `purge_run` audit entry carrying its counts, bytes, errors and duration,
//! and a freshly signed checkpoint covering it. A failing step is logged at
//! error level, counted in the metrics and in the entry, and does not stop
//! the other steps: a purge never fails silently.

use std::collections::BTreeSet;
use std::time::Instant;

use cloister_audit::{Action, Details};
use serde::Serialize;

use crate::service::Context;
use crate::store::holds::{self, Scope};
use crate::store::{media, purge as store};

/// What one purge run did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub started_ts: i64,
    pub duration_ms: u64,
    pub events: u64,
    pub media_files: u64,
    pub media_bytes: u64,
    pub to_device: u64,
    pub backup_keys: u64,
    pub devices: u64,
    /// Expired message events kept because a legal hold covers them.
    pub kept_under_hold: u64,
    /// One line per failed step; empty when everything worked.
    pub errors: Vec<String>,
}

impl Summary {
    fn details(&self) -> Details {
        let counts = [
            ("events", self.events),
            ("media_files", self.media_files),
            ("media_bytes", self.media_bytes),
            ("to_device", self.to_device),
            ("backup_keys", self.backup_keys),
            ("devices", self.devices),
            ("kept_under_hold", self.kept_under_hold),
            ("errors", self.errors.len() as u64),
            ("duration_ms", self.duration_ms),
        ];
        counts.iter().fold(Details::new(), |d, (name, n)| {
            d.with(name, *n).expect("valid detail names")
        })
    }
}

/// Holds in force at the start of a run.
pub struct Held {
    pub users: BTreeSet<String>,
    pub rooms: BTreeSet<String>,
}

/// Runs one purge now and records it. Fails only when even the audit entry
/// cannot be written; step failures are in the summary.
pub async fn run(state: &Context) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let now = state.now_ms();
    let mut summary = Summary {
        started_ts: now,
        ..Summary::default()
    };
    match held(state).await {
        Ok(held) => {
            let s = &mut summary;
            let r = purge_events(state, &held, now, s).await;
            step(s, "events", r);
            let r = purge_media(state, &held, now, s).await;
            step(s, "media", r);
            let r = purge_to_device(state, &held, now, s).await;
            step(s, "to_device", r);
            let r = purge_backups(state, &held, now, s).await;
            step(s, "backups", r);
            let r = purge_devices(state, &held, now, s).await;
            step(s, "devices", r);
        }
        Err(e) => summary.errors.push(format!("reading legal holds: {e}")),
    }
    if let Err(e) = state.store.reclaim().await {
        summary.errors.push(format!("reclaiming space: {e}"));
    }
    summary.duration_ms = started.elapsed().as_millis() as u64;
    state.metrics.record_purge(&summary);
    if summary.errors.is_empty() {
        tracing::info!(
            events = summary.events,
            media_files = summary.media_files,
            to_device = summary.to_device,
            backup_keys = summary.backup_keys,
            devices = summary.devices,
            kept_under_hold = summary.kept_under_hold,
            duration_ms = summary.duration_ms,
            "purge finished"
        );
    } else {
        for error in &summary.errors {
            tracing::error!(error = %error, "PURGE FAILED: retention is not being enforced for this step");
        }
    }
    let entry = crate::service::audit::by_system(state, Action::PurgeRun)
        .target(cloister_audit::Target::new("retention")?)
        .details(summary.details());
    crate::service::audit::record_alone(state, entry).await?;
    crate::service::audit::checkpoint(state).await?;
    Ok(summary)
}

/// Records a step that stopped early; what it did before still counts.
fn step(summary: &mut Summary, name: &str, result: anyhow::Result<()>) {
    if let Err(e) = result {
        summary.errors.push(format!("{name}: {e:#}"));
    }
}

impl Held {
    /// The held users, as the store's queries take them.
    fn user_list(&self) -> Vec<&str> {
        self.users.iter().map(String::as_str).collect()
    }
}

async fn held(state: &Context) -> Result<Held, sqlx::Error> {
    let mut c = state.store.read().await?;
    Ok(Held {
        users: holds::held_targets(&mut c, Scope::User)
            .await?
            .into_iter()
            .collect(),
        rooms: holds::held_targets(&mut c, Scope::Room)
            .await?
            .into_iter()
            .collect(),
    })
}

/// Rows deleted per transaction, so a large purge never holds the write
/// lock for long and a crash loses at most one batch of progress.
const BATCH: i64 = 500;

async fn purge_events(
    state: &Context,
    held: &Held,
    now: i64,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let room_ids = store::all_rooms(&mut *state.store.read().await?).await?;
    let held_users = held.user_list();
    let deleted_before = summary.events;
    for room_id in room_ids {
        let cutoff = {
            let mut c = state.store.read().await?;
            crate::service::retention::cutoff(state, &mut c, &room_id, now).await?
        };
        if cutoff == i64::MIN {
            continue;
        }
        if held.rooms.contains(&room_id) {
            summary.kept_under_hold +=
                store::count_expired_events(&mut *state.store.read().await?, &room_id, cutoff)
                    .await?;
            continue;
        }
        loop {
            let mut tx = state.store.write().await?;
            let deleted =
                store::delete_expired_events(&mut tx, &room_id, cutoff, &held_users, BATCH).await?;
            tx.commit().await?;
            summary.events += deleted;
            if deleted < BATCH as u64 {
                break;
            }
        }
        if !held_users.is_empty() {
            summary.kept_under_hold +=
                store::count_expired_events(&mut *state.store.read().await?, &room_id, cutoff)
                    .await?;
        }
    }
    if summary.events > deleted_before {
        // Copies of what was deleted are never served again (each deletion
        // moved its room's state serial); dropping them ends them in this
        // node's memory too (service::sync::recent).
        state.sync_recent.clear();
    }
    Ok(())
}

/// Files whose own lifetime passed, and files whose every carrying event
/// is gone. The file is unlinked before its row is deleted: a crash in
/// between leaves a row without a file (served as not found, deleted by the
/// next run), never a file nobody knows about.
async fn purge_media(
    state: &Context,
    held: &Held,
    now: i64,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let cutoff = state.config.retention.media_lifetime.cutoff(now);
    let candidates = {
        let mut c = state.store.read().await?;
        let mut ids = store::media_older_than(&mut c, cutoff).await?;
        ids.extend(store::media_with_only_purged_events(&mut c).await?);
        ids
    };
    let dir = state.config.media_dir();
    for (media_id, uploader, size) in candidates {
        if held.users.contains(&uploader) {
            continue;
        }
        let links = media::attached_to(&mut *state.store.read().await?, &media_id).await?;
        if links
            .iter()
            .flatten()
            .any(|(room_id, _)| held.rooms.contains(room_id))
        {
            continue;
        }
        match tokio::fs::remove_file(media::path(&dir, &media_id)).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                // Named like the errors `step` records for a whole step.
                summary
                    .errors
                    .push(format!("media: cannot delete a file: {e}"));
                continue;
            }
        }
        let mut tx = state.store.write().await?;
        if media::delete(&mut tx, &media_id).await? {
            summary.media_files += 1;
            summary.media_bytes += size.max(0) as u64;
        }
        tx.commit().await?;
    }
    Ok(())
}

async fn purge_to_device(
    state: &Context,
    held: &Held,
    now: i64,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let cutoff = state.config.retention.to_device_lifetime.cutoff(now);
    let held_users = held.user_list();
    let mut tx = state.store.write().await?;
    store::date_to_device(&mut tx, now).await?;
    summary.to_device += store::delete_expired_to_device(&mut tx, cutoff, &held_users).await?;
    tx.commit().await?;
    Ok(())
}

async fn purge_backups(
    state: &Context,
    held: &Held,
    now: i64,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let cutoff = state.config.retention.backup_lifetime.cutoff(now);
    let held_users = held.user_list();
    let mut tx = state.store.write().await?;
    store::date_backup_keys(&mut tx, now).await?;
    summary.backup_keys += store::delete_expired_backup_keys(&mut tx, cutoff, &held_users).await?;
    tx.commit().await?;
    Ok(())
}

/// Devices unseen for longer than the lifetime are signed out and deleted
/// the way a user deleting them would (device-list change, audit entry).
async fn purge_devices(
    state: &Context,
    held: &Held,
    now: i64,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let cutoff = state.config.retention.inactive_device_lifetime.cutoff(now);
    if cutoff == i64::MIN {
        return Ok(());
    }
    let inactive = store::inactive_devices(&mut *state.store.read().await?, cutoff).await?;
    for (user_id, device_ids) in inactive {
        if held.users.contains(&user_id) {
            continue;
        }
        crate::service::devices::delete_devices_by(
            state,
            &user_id,
            &device_ids,
            cloister_audit::Actor::system(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        summary.devices += device_ids.len() as u64;
    }
    Ok(())
}
