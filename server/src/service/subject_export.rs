//! Subject-access and portability exports (GDPR Art. 15 and 20): all the
//! server holds about one person, as versioned JSON (`docs/subject-export.md`),
//! sealed to a recipient's X25519 key or plain.
//!
//! Secrets the server holds only as hashes (password, access tokens) are
//! declared, never included. Other people's private data that mentions the
//! person (their direct-chat lists, say) is counted, not included: it is
//! theirs. Message content is what the server stores: ciphertext.

use cloister_audit::{Action, Actor, Details, NewEntry};
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::service::Context;
use crate::store::subject::{self, Col};
use crate::store::{audit as audit_store, erasure, users};

pub const FORMAT: &str = "cloister.subject_export";
pub const VERSION: u64 = 1;

/// Builds the export document for `user_id`.
pub async fn build(state: &Context, user_id: &str) -> ApiResult<Value> {
    let mut c = state.store.read().await?;
    let c = &mut *c;
    let Some(user) = users::get(c, user_id).await? else {
        return Err(ApiError::not_found("Unknown user"));
    };
    let u = &[user_id][..];
    let pseudonym = state.audit.target(user_id);

    let created_ts: Option<i64> =
        sqlx::query_scalar("SELECT created_ts FROM users WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&mut *c)
            .await?;
    let tokens = subject::count(c, "access_tokens", "user_id = $1", u).await?;
    let account = json!({
        "user_id": user.user_id,
        "created_ts": created_ts,
        "displayname": user.displayname,
        "avatar_url": user.avatar_url,
        "is_admin": user.is_admin,
        "deactivated": user.deactivated,
        "password": {
            "stored": user.password_hash.is_some(),
            "kind": "argon2id hash",
            "included": false,
        },
        "access_tokens": {
            "count": tokens,
            "kind": "SHA-256 hashes of the tokens",
            "included": false,
        },
    });

    let devices = subject::rows(
        c,
        "devices",
        &[
            Col::Text("device_id"),
            Col::Text("display_name"),
            Col::Int("created_ts"),
            Col::Int("last_seen_ts"),
        ],
        "user_id = $1",
        "device_id",
        u,
    )
    .await?;

    let keys = json!({
        "device_keys": subject::rows(c, "device_keys",
            &[Col::Text("device_id"), Col::Json("key_json")], "user_id = $1", "device_id", u).await?,
        "one_time_keys": subject::rows(c, "one_time_keys",
            &[Col::Text("device_id"), Col::Text("algorithm"), Col::Text("key_id"), Col::Json("key_json")],
            "user_id = $1", "device_id, algorithm, key_id", u).await?,
        "fallback_keys": subject::rows(c, "fallback_keys",
            &[Col::Text("device_id"), Col::Text("algorithm"), Col::Text("key_id"), Col::Json("key_json"), Col::Flag("used")],
            "user_id = $1", "device_id, algorithm", u).await?,
        "cross_signing_keys": subject::rows(c, "cross_signing_keys",
            &[Col::Text("key_type"), Col::Json("key_json")], "user_id = $1", "key_type", u).await?,
        "signatures": subject::rows(c, "key_signatures",
            &[Col::Text("target_user"), Col::Text("target_key"), Col::Text("signer_user"), Col::Text("signer_key"), Col::Text("signature")],
            "target_user = $1 OR signer_user = $1", "target_user, target_key, signer_user, signer_key", u).await?,
    });
    let device_list_changes = subject::rows(
        c,
        "device_list_changes",
        &[Col::Int("stream_pos")],
        "user_id = $1",
        "stream_pos",
        u,
    )
    .await?;

    let memberships = subject::rows(
        c,
        "memberships",
        &[
            Col::Text("room_id"),
            Col::Text("membership"),
            Col::Int("stream_pos"),
            Col::Int("span_start_pos"),
            Col::Flag("forgotten"),
        ],
        "user_id = $1",
        "room_id",
        u,
    )
    .await?;
    let push = json!({
        "pushers": subject::rows(c, "pushers",
            &[Col::Text("device_id"), Col::Text("app_id"), Col::Text("pushkey"), Col::Text("kind"),
              Col::Text("app_display_name"), Col::Text("device_display_name"), Col::Text("profile_tag"),
              Col::Text("lang"), Col::Json("data"), Col::Int("pushkey_ts"), Col::Int("failing_since")],
            "user_id = $1", "app_id, pushkey", u).await?,
        "notifications": subject::rows(c, "notifications",
            &[Col::Text("room_id"), Col::Text("event_id"), Col::Text("thread_id"), Col::Flag("highlight"), Col::Json("actions"), Col::Int("ts")],
            "user_id = $1", "stream_pos", u).await?,
        "unread_counts": subject::rows(c, "notification_counts",
            &[Col::Text("room_id"), Col::Text("thread_id"), Col::Int("notifications"), Col::Int("highlights")],
            "user_id = $1", "room_id, thread_id", u).await?,
        "pending": subject::rows(c, "push_outbox",
            &[Col::Text("app_id"), Col::Text("pushkey"), Col::Text("event_id"), Col::Text("room_id"),
              Col::Int("unread"), Col::Int("attempts"), Col::Int("created_ts")],
            "user_id = $1", "created_ts, id", u).await?,
    });
    let rooms_created = subject::rows(
        c,
        "rooms",
        &[
            Col::Text("room_id"),
            Col::Text("room_version"),
            Col::Flag("is_public"),
            Col::Int("created_ts"),
        ],
        "creator = $1",
        "room_id",
        u,
    )
    .await?;
    let aliases = subject::rows(
        c,
        "room_aliases",
        &[Col::Text("alias"), Col::Text("room_id")],
        "creator = $1",
        "alias",
        u,
    )
    .await?;
    let room_state = subject::rows(
        c,
        "current_state",
        &[
            Col::Text("room_id"),
            Col::Text("event_type"),
            Col::Text("state_key"),
            Col::Text("event_id"),
        ],
        "state_key = $1",
        "room_id, event_type",
        u,
    )
    .await?;

    let (mut sent, mut naming) = (Vec::new(), Vec::new());
    for event in subject::events_naming(c, user_id).await? {
        if event.sender == user_id {
            sent.push(event.to_json());
        } else {
            naming.push(event.to_json());
        }
    }

    let mut media = Vec::new();
    for mut row in subject::rows(
        c,
        "media",
        &[
            Col::Text("media_id"),
            Col::Text("content_type"),
            Col::Text("filename"),
            Col::Int("size"),
            Col::Int("created_ts"),
        ],
        "uploader = $1",
        "created_ts, media_id",
        u,
    )
    .await?
    {
        let id = row["media_id"].as_str().unwrap_or_default().to_owned();
        let events = subject::media_events(c, &id).await?;
        row["content_uri"] = json!(format!("mxc://{}/{id}", state.server_name()));
        row["attached_to_events"] = json!(events);
        media.push(row);
    }

    let account_data = subject::rows(
        c,
        "account_data",
        &[
            Col::Text("room_id"),
            Col::Text("data_type"),
            Col::Json("content"),
            Col::Int("stream_pos"),
        ],
        "user_id = $1",
        "room_id, data_type",
        u,
    )
    .await?;
    let filters = subject::rows(
        c,
        "filters",
        &[Col::Text("filter_id"), Col::Json("filter_json")],
        "user_id = $1",
        "filter_id",
        u,
    )
    .await?;
    let key_backup = json!({
        "versions": subject::rows(c, "backup_versions",
            &[Col::Int("version"), Col::Text("algorithm"), Col::Json("auth_data"), Col::Int("etag"), Col::Flag("deleted")],
            "user_id = $1", "version", u).await?,
        "keys": subject::rows(c, "backup_keys",
            &[Col::Int("version"), Col::Text("room_id"), Col::Text("session_id"), Col::Int("first_message_index"),
              Col::Int("forwarded_count"), Col::Flag("is_verified"), Col::Json("session_data"), Col::Int("updated_ts")],
            "user_id = $1", "version, room_id, session_id", u).await?,
    });
    let to_device_cols = [
        Col::Int("stream_pos"),
        Col::Text("user_id"),
        Col::Text("device_id"),
        Col::Text("sender"),
        Col::Text("event_type"),
        Col::Json("content"),
        Col::Int("created_ts"),
    ];
    let to_device = json!({
        "received": subject::rows(c, "to_device", &to_device_cols, "user_id = $1", "stream_pos", u).await?,
        "sent": subject::rows(c, "to_device", &to_device_cols, "sender = $1 AND user_id <> $1", "stream_pos", u).await?,
    });
    let receipts = subject::rows(
        c,
        "receipts",
        &[
            Col::Text("room_id"),
            Col::Text("receipt_type"),
            Col::Text("thread_id"),
            Col::Text("event_id"),
            Col::Int("ts"),
        ],
        "user_id = $1",
        "room_id, receipt_type, thread_id",
        u,
    )
    .await?;
    let typing = subject::rows(
        c,
        "typing",
        &[Col::Text("room_id"), Col::Int("expires_ts")],
        "user_id = $1",
        "room_id",
        u,
    )
    .await?;
    let transactions = subject::rows(
        c,
        "txn_ids",
        &[
            Col::Text("device_id"),
            Col::Text("kind"),
            Col::Text("txn_id"),
            Col::Json("result"),
            Col::Int("created_ts"),
        ],
        "user_id = $1",
        "created_ts, device_id, kind, txn_id",
        u,
    )
    .await?;
    let auth_sessions = subject::rows(
        c,
        "uia_sessions",
        &[Col::Json("completed"), Col::Int("created_ts")],
        "user_id = $1",
        "created_ts",
        u,
    )
    .await?;
    let directory_login = subject::rows(
        c,
        "ldap_accounts",
        &[Col::Int("created_ts")],
        "user_id = $1",
        "created_ts",
        u,
    )
    .await?;
    let directory_attributes = subject::rows(
        c,
        "directory_attributes",
        &[
            Col::Text("mail"),
            Col::Text("department"),
            Col::Int("updated_ts"),
        ],
        "user_id = $1",
        "updated_ts",
        u,
    )
    .await?;
    let identity_links = subject::rows(
        c,
        "identity_links",
        &[
            Col::Text("issuer"),
            Col::Text("subject"),
            Col::Int("created_ts"),
        ],
        "user_id = $1",
        "created_ts",
        u,
    )
    .await?;
    let sso_devices = subject::rows(
        c,
        "sso_devices",
        &[
            Col::Text("device_id"),
            Col::Text("issuer"),
            Col::Text("session_id"),
            Col::Int("created_ts"),
        ],
        "user_id = $1",
        "created_ts",
        u,
    )
    .await?;
    let legal_holds = subject::rows(
        c,
        "legal_holds",
        &[
            Col::Text("hold_id"),
            Col::Text("scope"),
            Col::Text("target"),
            Col::Text("case_id"),
            Col::Text("reason"),
            Col::Text("set_by"),
            Col::Int("set_ts"),
            Col::Text("released_by"),
            Col::Int("released_ts"),
        ],
        "target = $1 OR set_by = $1 OR released_by = $1",
        "set_ts, hold_id",
        u,
    )
    .await?;

    // Rows of other people's that mention them: keyed by someone else.
    let mut others_private = Map::new();
    for (table, keys, column) in erasure::MENTIONS {
        let n = erasure::mentions(c, table, keys, column, user_id)
            .await?
            .into_iter()
            .filter(|(key, _)| !key.iter().any(|k| k == user_id))
            .count();
        others_private.insert(format!("{table}_rows_naming_you"), json!(n));
    }

    let ps = pseudonym.as_str();
    let audit_log: Vec<Value> = audit_store::entries(c)
        .await?
        .into_iter()
        .filter(|e| e.actor.as_str() == ps || e.target.as_ref().is_some_and(|t| t.as_str() == ps))
        .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
        .collect();

    Ok(json!({
        "format": FORMAT,
        "version": VERSION,
        "user_id": user_id,
        "server_name": state.server_name(),
        "generated_ts": state.now_ms(),
        "audit_pseudonym": ps,
        "sections": {
            "account": account,
            "devices": devices,
            "keys": keys,
            "device_list_changes": device_list_changes,
            "memberships": memberships,
            "rooms_created": rooms_created,
            "room_aliases": aliases,
            "room_state": room_state,
            "events": { "sent": sent, "naming_you": naming },
            "media": media,
            "account_data": account_data,
            "filters": filters,
            "key_backup": key_backup,
            "to_device": to_device,
            "receipts": receipts,
            "typing": typing,
            "push": push,
            "transactions": transactions,
            "auth_sessions": auth_sessions,
            "directory_login": directory_login,
            "directory_attributes": directory_attributes,
            "single_sign_on": { "identity_links": identity_links, "devices": sso_devices },
            "legal_holds": legal_holds,
            "audit_log": audit_log,
        },
        "not_included": {
            "password": "only an argon2id hash is stored; it cannot be turned back into the password",
            "access_tokens": "only SHA-256 hashes are stored",
            "login_tokens": "single sign-on login tokens: only SHA-256 hashes are stored, for two minutes",
            "media_files": "uploaded files are encrypted by the uploader's client; download them with a client, or ask the administrator for the encrypted files",
            "other_users_private_data": others_private,
        },
    }))
}

/// Parses an unpadded (or padded) standard-base64 X25519 public key.
pub fn parse_recipient(text: &str) -> ApiResult<x25519_dalek::PublicKey> {
    use base64::Engine;
    let bad = || {
        ApiError::invalid_param(
            "recipient_key must be a 32-byte X25519 public key in unpadded base64",
        )
    };
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .map_err(|_| bad())?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
    let key = x25519_dalek::PublicKey::from(bytes);
    // A low-order key would make every "sealed" export readable by anyone.
    cloister_audit::seal::seal(b"", &key).map_err(|_| bad())?;
    Ok(key)
}

/// The export as bytes: sealed to `recipient`, or plain JSON without one.
/// Audited (Action::Export, target = the person's pseudonym) before it is
/// built, so the export lists its own record.
pub async fn export(
    state: &Context,
    user_id: &str,
    actor: Actor,
    recipient: Option<&x25519_dalek::PublicKey>,
) -> ApiResult<Vec<u8>> {
    if users::get(&mut *state.store.read().await?, user_id)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("Unknown user"));
    }
    let details = Details::new()
        .with("sealed", u64::from(recipient.is_some()))
        .map_err(|_| ApiError::internal())?;
    let entry = NewEntry::new(state.now_ms().max(0) as u64, actor, Action::Export)
        .target(state.audit.target(user_id))
        .details(details);
    crate::service::audit::record_alone(state, entry).await?;
    let doc = build(state, user_id).await?;
    let bytes = serde_json::to_vec_pretty(&doc).map_err(|_| ApiError::internal())?;
    match recipient {
        None => Ok(bytes),
        Some(key) => cloister_audit::seal::seal(&bytes, key).map_err(|e| {
            tracing::error!(error = %e, "sealing an export failed");
            ApiError::internal()
        }),
    }
}
