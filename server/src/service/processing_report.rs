//! The record of processing activities (GDPR Art. 30), generated from the
//! live configuration and database so that it cannot drift from what the
//! server actually does: categories come from the personal-data registry,
//! retention from the settings and the rooms' own policies in force, holds
//! from the holds table.

use serde_json::{json, Value};
use sqlx::Row;

use crate::config::Lifetime;
use crate::error::ApiResult;
use crate::service::Context;
use crate::store::holds::{self, Scope};
use crate::store::personal_data::{self, DATA_SUBJECTS, NOT_PERSONAL, PERSONAL, PSEUDONYMOUS};
use crate::store::{audit as audit_store, erased};

pub const FORMAT: &str = "cloister.processing_record";

const RECIPIENTS: &[&str] = &[
    "the server administrators named by the controller (they cannot read messages or files: those are end-to-end encrypted)",
    "the people a user communicates with, for what the user sends them",
    "nobody else: this server does not federate with other Matrix servers and calls no third-party services",
];

const SECURITY: &[&str] = &[
    "end-to-end encryption of messages and files on users' devices; the server refuses unencrypted messages (docs/api.md)",
    "passwords stored only as argon2id hashes; access tokens stored only as SHA-256 hashes",
    "no IP addresses stored; server logs carry no message content, tokens, room or user identifiers",
    "tamper-evident audit log (RFC 6962 Merkle tree, signed checkpoints) of security and administrative actions, naming people only by pseudonym",
    "administrative functions restricted to server administrators, every call audited",
    "erasure (Art. 17) and subject-access exports sealed to the requester's key (Art. 15/20)",
];

fn lifetime(l: Lifetime) -> Value {
    let text = match l {
        Lifetime::Forever => "no time limit (kept until deleted)".to_owned(),
        Lifetime::Millis(_) => l.to_string(),
    };
    json!({ "text": text, "millis": l.as_millis() })
}

/// The record as JSON.
pub async fn build(state: &Context) -> ApiResult<Value> {
    let mut c = state.store.read().await?;
    let c = &mut *c;
    let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
    let active = count("SELECT COUNT(*) FROM users WHERE deactivated = 0")
        .fetch_one(&mut *c)
        .await?;
    let deactivated = count("SELECT COUNT(*) FROM users WHERE deactivated <> 0")
        .fetch_one(&mut *c)
        .await?;
    let erased_count = erased::count(c).await?;

    let r = &state.config.retention;
    let mut room_policies = Vec::new();
    let rows = sqlx::query(
        "SELECT cs.room_id, e.content FROM current_state cs JOIN events e ON e.event_id = cs.event_id \
         WHERE cs.event_type = $1 AND cs.state_key = '' ORDER BY cs.room_id",
    )
    .bind(crate::service::retention::RETENTION_EVENT)
    .fetch_all(&mut *c)
    .await?;
    for row in rows {
        let room_id: String = row.try_get(0)?;
        let content: String = row.try_get(1)?;
        let content: Value = serde_json::from_str(&content).unwrap_or(Value::Null);
        let policy = crate::service::retention::policy_from_content(state, Some(&content));
        room_policies.push(json!({
            "room_id": room_id,
            "requested_max_lifetime_ms": policy.requested_max_lifetime,
            "requested_min_lifetime_ms": policy.requested_min_lifetime,
            "max_lifetime_in_force": lifetime(policy.max_lifetime),
        }));
    }

    let active_holds = holds::list(c, true).await?;
    let mut case_ids: Vec<&str> = active_holds.iter().map(|h| h.case_id.as_str()).collect();
    case_ids.sort_unstable();
    case_ids.dedup();
    let holds_json: Vec<Value> = active_holds
        .iter()
        .map(|h| {
            json!({
                "hold_id": h.hold_id,
                "case_id": h.case_id,
                "scope": h.scope,
                // Rooms are named; custodians are not: the record is about
                // processing, not about whom a case concerns.
                "room_id": (h.scope == Scope::Room).then_some(&h.target),
                "since_ts": h.set_ts,
            })
        })
        .collect();

    let audit_entries = audit_store::size(c).await?;
    let latest_checkpoint = audit_store::latest_checkpoint(c).await?;

    Ok(json!({
        "format": FORMAT,
        "version": 1,
        "generated_ts": state.now_ms(),
        "server_name": state.server_name(),
        "controller": state.config.processing.controller,
        "dpo_contact": state.config.processing.dpo_contact,
        "purposes": personal_data::purposes(),
        "data_subjects": {
            "categories": DATA_SUBJECTS,
            "accounts_active": active,
            "accounts_deactivated": deactivated,
            "accounts_erased": erased_count,
        },
        "data_categories": PERSONAL.iter().map(|t| json!({
            "table": t.table,
            "category": t.category,
            "purpose": t.purpose,
            "columns_naming_people": t.user_columns,
        })).collect::<Vec<_>>(),
        "pseudonymous_data": PSEUDONYMOUS.iter().map(|t| json!({ "table": t.table, "what": t.why })).collect::<Vec<_>>(),
        "no_personal_data": NOT_PERSONAL.iter().map(|t| json!({ "table": t.table, "what": t.why })).collect::<Vec<_>>(),
        "recipients": RECIPIENTS,
        "transfers": {
            "third_countries": "none: the server sends data to no other server or service",
            "federation": false,
        },
        "retention": {
            "messages_default": lifetime(r.default_max_lifetime),
            "room_policy_min": lifetime(r.allowed_min_lifetime),
            "room_policy_max": lifetime(r.allowed_max_lifetime),
            "media": lifetime(r.media_lifetime),
            "undelivered_device_messages": lifetime(r.to_device_lifetime),
            "key_backups": lifetime(r.backup_lifetime),
            "inactive_devices": lifetime(r.inactive_device_lifetime),
            "purge_interval": lifetime(r.purge_interval),
            "rooms_with_own_policy": room_policies,
            "accounts": "until the person or an administrator erases them (deactivated accounts are kept until erased)",
            "audit_log": "kept for the life of the server (pseudonymous; rewriting it would break its tamper evidence)",
        },
        "legal_holds": {
            "active": active_holds.len(),
            "case_ids": case_ids,
            "holds": holds_json,
        },
        "security_measures": {
            "measures": SECURITY,
            "plaintext_room_exemptions": state.config.encryption.plaintext_rooms.len(),
            "audit_log_entries": audit_entries,
            "audit_latest_checkpoint": latest_checkpoint.map(|(size, ts)| json!({ "entries": size, "ts": ts })),
            "audit_verifier_key": state.audit.verifier_key(),
        },
    }))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) if s.is_empty() => "(not configured)".to_owned(),
        Value::String(s) => s.clone(),
        Value::Null => "—".to_owned(),
        other => other.to_string(),
    }
}

fn bullets(out: &mut String, items: &Value) {
    for item in items.as_array().into_iter().flatten() {
        out.push_str(&format!("- {}\n", text(item)));
    }
}

/// The record as Markdown, for people.
pub fn to_markdown(r: &Value) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "# Record of processing activities (GDPR Art. 30)\n\nServer `{}`, generated {}.\n\n",
        text(&r["server_name"]),
        utc(r["generated_ts"].as_i64().unwrap_or(0))
    ));
    o.push_str(&format!(
        "## Controller\n\n- Controller: {}\n- Data-protection officer: {}\n\n",
        text(&r["controller"]),
        text(&r["dpo_contact"])
    ));
    o.push_str("## Purposes\n\n");
    bullets(&mut o, &r["purposes"]);
    let s = &r["data_subjects"];
    o.push_str("\n## Categories of data subjects\n\n");
    bullets(&mut o, &s["categories"]);
    o.push_str(&format!(
        "\nAccounts: {} active, {} deactivated, {} erased.\n\n",
        s["accounts_active"], s["accounts_deactivated"], s["accounts_erased"]
    ));
    o.push_str(
        "## Categories of personal data\n\n| data | purpose | table |\n| --- | --- | --- |\n",
    );
    for c in r["data_categories"].as_array().into_iter().flatten() {
        o.push_str(&format!(
            "| {} | {} | `{}` |\n",
            text(&c["category"]),
            text(&c["purpose"]),
            text(&c["table"])
        ));
    }
    o.push_str("\nPseudonymous:\n\n");
    for c in r["pseudonymous_data"].as_array().into_iter().flatten() {
        o.push_str(&format!(
            "- `{}`: {}\n",
            text(&c["table"]),
            text(&c["what"])
        ));
    }
    o.push_str("\n## Recipients\n\n");
    bullets(&mut o, &r["recipients"]);
    o.push_str(&format!(
        "\n## Transfers to third countries\n\n{}\n\n",
        text(&r["transfers"]["third_countries"])
    ));
    let t = &r["retention"];
    o.push_str("## Retention in force\n\n| data | kept for |\n| --- | --- |\n");
    for (key, label) in [
        (
            "messages_default",
            "messages (rooms without their own policy)",
        ),
        ("room_policy_min", "shortest lifetime a room may set"),
        ("room_policy_max", "longest lifetime a room may set"),
        ("media", "uploaded files"),
        ("undelivered_device_messages", "undelivered device messages"),
        ("key_backups", "key backups"),
        ("inactive_devices", "devices not seen"),
        ("purge_interval", "deletion job runs every"),
    ] {
        o.push_str(&format!("| {label} | {} |\n", text(&t[key]["text"])));
    }
    o.push_str(&format!(
        "| accounts | {} |\n| audit log | {} |\n\n(`none` means no time limit.)\n\n",
        text(&t["accounts"]),
        text(&t["audit_log"])
    ));
    let rooms = t["rooms_with_own_policy"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if rooms.is_empty() {
        o.push_str("No room has a retention policy of its own.\n\n");
    } else {
        o.push_str("Rooms with their own policy:\n\n| room | messages kept for |\n| --- | --- |\n");
        for room in rooms {
            o.push_str(&format!(
                "| `{}` | {} |\n",
                text(&room["room_id"]),
                text(&room["max_lifetime_in_force"]["text"])
            ));
        }
        o.push('\n');
    }
    let h = &r["legal_holds"];
    o.push_str(&format!("## Legal holds\n\nActive holds: {}.", h["active"]));
    let cases: Vec<String> = h["case_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    if !cases.is_empty() {
        o.push_str(&format!(" Cases: {}.", cases.join(", ")));
    }
    o.push_str(
        " Data under an active hold is kept beyond its retention period and is not erased.\n\n",
    );
    let m = &r["security_measures"];
    o.push_str("## Technical and organisational security measures\n\n");
    bullets(&mut o, &m["measures"]);
    o.push_str(&format!(
        "\nRooms exempted from the encryption-only rule: {}. Audit log: {} entries; verifier key `{}`.\n",
        m["plaintext_room_exemptions"],
        m["audit_log_entries"],
        text(&m["audit_verifier_key"])
    ));
    o
}

/// `YYYY-MM-DD HH:MM UTC` for a Unix time in milliseconds (the proleptic
/// Gregorian calendar, by H. Hinnant's days-to-civil algorithm).
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(super::utc(1_795_330_073_607), "2026-11-22 06:47 UTC");
    }
}
