//! The background side of push: the evaluator loop and the sender loop,
//! started with the server and stopped with it.
//!
//! The sender claims due outbox rows with a lease (so with several nodes on
//! one PostgreSQL one node sends each row), posts each to its pusher's
//! gateway (Push Gateway API `POST /_matrix/push/v1/notify`), and then
//! deletes the row, or releases it for a retry with exponential backoff on a
//! 5xx, a 429 or a connection error. A node that dies mid-send leaves its
//! lease to expire and the row is sent again: delivery is at least once,
//! and gateways treat a repeated event id as the same notification.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::service::Context;
use crate::store::push::{self, OutboxRow};

/// How often the loops look for work when nothing woke them.
const POLL: Duration = Duration::from_millis(250);
/// How long the evaluator lets events gather while they keep coming.
const BUSY_POLL: Duration = Duration::from_millis(250);
/// Rows one sender claims at a time, and sends concurrently.
const CLAIM: i64 = 16;
/// Longer than a request can take (the timeouts below), so a lease only
/// lapses when its node died.
const LEASE_MS: i64 = 60_000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Retries: 1 s, 2 s, 4 s … capped at 5 minutes; a notification is given up
/// after this many attempts or this long, whichever comes first (spec:
/// "retry for a reasonable amount of time using exponential backoff").
const MAX_ATTEMPTS: i64 = 10;
const MAX_BACKOFF_MS: i64 = 5 * 60 * 1000;
const GIVE_UP_AFTER_MS: i64 = 60 * 60 * 1000;
/// A pusher whose every delivery failed for this long is deleted: its app
/// was most likely uninstalled or its gateway is gone for good.
const DROP_FAILING_PUSHER_AFTER_MS: i64 = 24 * 3600 * 1000;
const CLEANUP_EVERY_MS: i64 = 60 * 1000;

/// Starts the evaluator and the sender; the server aborts the returned
/// tasks on shutdown (everything they do is durable in the database).
pub fn start(state: &Context) -> Vec<tokio::task::JoinHandle<()>> {
    let wake = Arc::new(Notify::new());
    vec![
        tokio::spawn(evaluator(state.clone(), wake.clone())),
        tokio::spawn(sender(state.clone(), wake)),
    ]
}

async fn evaluator(state: Context, wake: Arc<Notify>) {
    while !state.notifier.is_shutting_down() {
        let evaluated = {
            let _one = state.push_evaluation.lock().await;
            super::evaluate_batch(&state).await
        };
        match evaluated {
            Ok(done) => {
                if done.queued > 0 {
                    wake.notify_one();
                }
                if done.backlog {
                    continue; // a backlog: more is waiting
                }
                if done.events > 0 {
                    // Under load, let events gather so one transaction
                    // evaluates many: a batch per event cost more than the
                    // sends themselves.
                    tokio::time::sleep(BUSY_POLL).await;
                    continue;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "evaluating push rules failed; retrying");
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn sender(state: Context, wake: Arc<Notify>) {
    let client = match reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        // A redirect could lead anywhere, this server included.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("Cloister push")
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(error = %err, "PUSH DISABLED: cannot build the HTTP client");
            return;
        }
    };
    let mut next_cleanup = 0;
    while !state.notifier.is_shutting_down() {
        if state.now_ms() >= next_cleanup {
            next_cleanup = state.now_ms() + CLEANUP_EVERY_MS;
            if let Err(err) = cleanup(&state).await {
                tracing::warn!(error = %err, "deleting old notifications failed; retrying");
            }
        }
        match send_due(&state, &client).await {
            Ok(n) if n as i64 == CLAIM => continue,
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "sending pushes failed; retrying"),
        }
        let _ = tokio::time::timeout(POLL, wake.notified()).await;
    }
}

async fn cleanup(state: &Context) -> Result<(), sqlx::Error> {
    let now = state.now_ms();
    let mut tx = state.store.write().await?;
    push::delete_old_notifications(&mut tx, now - super::NOTIFICATION_LIFETIME_MS).await?;
    tx.commit().await?;
    let mut w = state.store.autocommit().await?;
    let dropped = push::delete_failing_pushers(&mut w, now - DROP_FAILING_PUSHER_AFTER_MS).await?;
    if dropped > 0 {
        tracing::info!(
            pushers = dropped,
            "deleted pushers whose gateway failed for a day"
        );
    }
    Ok(())
}

async fn send_due(state: &Context, client: &reqwest::Client) -> Result<usize, sqlx::Error> {
    let now = state.now_ms();
    if !push::any_due(&mut *state.store.read().await?, now).await? {
        return Ok(0);
    }
    let claimed = push::claim(
        &mut state.store.autocommit().await?,
        now,
        now + LEASE_MS,
        CLAIM,
    )
    .await?;
    let n = claimed.len();
    let sends = claimed.into_iter().map(|row| async move {
        if let Err(err) = send_one(state, client, &row).await {
            // The lease lapses and the row is tried again.
            tracing::warn!(error = %err, "recording a push's outcome failed");
        }
    });
    futures::future::join_all(sends).await;
    Ok(n)
}

enum Outcome {
    Delivered {
        rejected: bool,
    },
    /// Worth another try: 5xx, 429, timeouts, refused connections.
    Transient,
    /// The gateway refused the request itself (4xx): retrying cannot help.
    Permanent,
}

async fn send_one(
    state: &Context,
    client: &reqwest::Client,
    row: &OutboxRow,
) -> Result<(), sqlx::Error> {
    let pusher = push::pusher(
        &mut *state.store.read().await?,
        &row.user_id,
        &row.app_id,
        &row.pushkey,
    )
    .await?;
    let Some(pusher) = pusher else {
        // Deleted since (logout, rejection): nothing to send to.
        return push::finish(&mut state.store.autocommit().await?, &row.id).await;
    };
    let Some(url) = pusher.data.get("url").and_then(Value::as_str) else {
        return push::finish(&mut state.store.autocommit().await?, &row.id).await;
    };
    let outcome = post(client, url, &request_body(row, &pusher)).await;
    let metrics = &state.metrics;
    let now = state.now_ms();
    let mut w = state.store.autocommit().await?;
    match outcome {
        Outcome::Delivered { rejected } => {
            metrics.pushes_sent.fetch_add(1, Ordering::Relaxed);
            push::finish(&mut w, &row.id).await?;
            if rejected {
                // Spec: stop sending to a rejected pushkey and remove its pusher.
                metrics.pushkeys_rejected.fetch_add(1, Ordering::Relaxed);
                push::delete_pushers(&mut w, &row.app_id, &row.pushkey, Some(&row.user_id), None)
                    .await?;
                tracing::info!(app_id = %row.app_id, "the push gateway rejected a pushkey; its pusher is deleted");
            } else {
                push::set_failing(&mut w, &row.user_id, &row.app_id, &row.pushkey, None).await?;
            }
        }
        Outcome::Transient
            if row.attempts < MAX_ATTEMPTS && now - row.created_ts < GIVE_UP_AFTER_MS =>
        {
            metrics.push_retries.fetch_add(1, Ordering::Relaxed);
            push::retry_at(&mut w, &row.id, now + backoff_ms(row.attempts)).await?;
        }
        Outcome::Transient | Outcome::Permanent => {
            metrics.pushes_failed.fetch_add(1, Ordering::Relaxed);
            push::finish(&mut w, &row.id).await?;
            push::set_failing(&mut w, &row.user_id, &row.app_id, &row.pushkey, Some(now)).await?;
            tracing::warn!(app_id = %row.app_id, attempts = row.attempts, "a push could not be delivered; giving up on it");
        }
    }
    Ok(())
}

/// The delay before attempt `attempts + 1`.
fn backoff_ms(attempts: i64) -> i64 {
    let exp = attempts.clamp(1, 20) - 1;
    (1000i64 << exp).min(MAX_BACKOFF_MS)
}

/// The Push Gateway API request, always in the `event_id_only` format:
/// whatever `data.format` the pusher asked for, no content, sender, room
/// name or event type leaves the server.
fn request_body(row: &OutboxRow, pusher: &push::Pusher) -> Value {
    let mut data = pusher.data.clone();
    if let Some(map) = data.as_object_mut() {
        map.remove("url");
        map.insert("format".into(), json!("event_id_only"));
    }
    json!({
        "notification": {
            "event_id": row.event_id,
            "room_id": row.room_id,
            "prio": row.prio,
            "counts": { "unread": row.unread },
            "devices": [{
                "app_id": row.app_id,
                "pushkey": row.pushkey,
                "pushkey_ts": pusher.pushkey_ts / 1000,
                "data": data,
                "tweaks": row.tweaks,
            }],
        }
    })
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Outcome {
    let response = match client.post(url).json(body).send().await {
        Ok(r) => r,
        // The URL and its host stay out of the log: it can carry a secret.
        Err(err) => {
            tracing::debug!(
                timeout = err.is_timeout(),
                connect = err.is_connect(),
                "push gateway unreachable"
            );
            return Outcome::Transient;
        }
    };
    let status = response.status();
    if status.is_server_error() || status.as_u16() == 429 {
        return Outcome::Transient;
    }
    if !status.is_success() {
        tracing::debug!(status = status.as_u16(), "push gateway refused the request");
        return Outcome::Permanent;
    }
    let pushkey = body["notification"]["devices"][0]["pushkey"].as_str();
    // A body that is not the spec's shape still means delivered.
    let rejected = match response.json::<Value>().await {
        Ok(answer) => answer["rejected"]
            .as_array()
            .is_some_and(|keys| keys.iter().any(|k| k.as_str() == pushkey)),
        Err(_) => false,
    };
    Outcome::Delivered { rejected }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_ms(1), 1000);
        assert_eq!(backoff_ms(2), 2000);
        assert_eq!(backoff_ms(4), 8000);
        assert_eq!(backoff_ms(30), MAX_BACKOFF_MS);
    }

    #[test]
    fn the_request_is_event_id_only_whatever_the_pusher_asked() {
        let pusher = push::Pusher {
            user_id: "@a:x".into(),
            device_id: "D".into(),
            app_id: "app".into(),
            pushkey: "key".into(),
            kind: "http".into(),
            app_display_name: "App".into(),
            device_display_name: "Phone".into(),
            profile_tag: None,
            lang: "en".into(),
            data: json!({ "url": "https://gw/_matrix/push/v1/notify", "format": "full", "x": 1 }),
            pushkey_ts: 5000,
        };
        let row = OutboxRow {
            id: "1".into(),
            user_id: "@a:x".into(),
            app_id: "app".into(),
            pushkey: "key".into(),
            event_id: "$e".into(),
            room_id: "!r".into(),
            unread: 3,
            prio: "low".into(),
            tweaks: json!({}),
            attempts: 1,
            created_ts: 0,
        };
        let body = request_body(&row, &pusher);
        let n = &body["notification"];
        assert_eq!(
            n["devices"][0]["data"],
            json!({ "format": "event_id_only", "x": 1 })
        );
        assert_eq!(n["devices"][0]["pushkey_ts"], 5);
        assert_eq!(n["counts"]["unread"], 3);
        for absent in [
            "sender",
            "sender_display_name",
            "room_name",
            "type",
            "content",
        ] {
            assert!(n.get(absent).is_none(), "{absent}");
        }
    }
}
