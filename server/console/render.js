// Generic rendering of the server's JSON objects (retention settings, purge
// summaries, erasure receipts, the record of processing): known field names
// get a label from the catalogs, unknown ones are shown as they are; values
// are formatted by their name (…_ts a date, …_ms a duration, …_bytes a size).

import { dl, fmtBytes, fmtDate, fmtDuration, fmtLifetime, fmtNumber, h, t, table } from "./lib.js";

/** Labels of the fields the server sends; a literal map so every key is greppable. */
function fieldLabels() {
  return {
    user_id: t("field.user_id"),
    room_id: t("field.room_id"),
    pseudonym: t("field.pseudonym"),
    replaced_by: t("field.replaced_by"),
    already_erased: t("field.already_erased"),
    complete: t("field.complete"),
    counts: t("field.counts"),
    kept_under_hold: t("field.kept_under_hold"),
    kept_events: t("field.kept_events"),
    kept_media: t("field.kept_media"),
    audit_seq: t("field.audit_seq"),
    erased_ts: t("field.erased_ts"),
    hold_id: t("field.hold_id"),
    case_id: t("field.case_id"),
    case_ids: t("field.case_ids"),
    scope: t("field.scope"),
    since_ts: t("field.since_ts"),
    started_ts: t("field.started_ts"),
    duration_ms: t("field.duration_ms"),
    events: t("field.events"),
    media_files: t("field.media_files"),
    media_bytes: t("field.media_bytes"),
    to_device: t("field.to_device"),
    backup_keys: t("field.backup_keys"),
    devices: t("field.devices"),
    errors: t("field.errors"),
    version: t("field.version"),
    uptime_s: t("field.uptime_s"),
    database: t("field.database"),
    users: t("field.users"),
    rooms: t("field.rooms"),
    active_long_polls: t("field.active_long_polls"),
    audit_entries: t("field.audit_entries"),
    default_max_lifetime: t("field.default_max_lifetime"),
    allowed_min_lifetime: t("field.allowed_min_lifetime"),
    allowed_max_lifetime: t("field.allowed_max_lifetime"),
    media_lifetime: t("field.media_lifetime"),
    to_device_lifetime: t("field.to_device_lifetime"),
    backup_lifetime: t("field.backup_lifetime"),
    inactive_device_lifetime: t("field.inactive_device_lifetime"),
    purge_interval: t("field.purge_interval"),
    generated_ts: t("field.generated_ts"),
    server_name: t("field.server_name"),
    controller: t("field.controller"),
    dpo_contact: t("field.dpo_contact"),
    format: t("field.format"),
    categories: t("field.categories"),
    accounts_active: t("field.accounts_active"),
    accounts_deactivated: t("field.accounts_deactivated"),
    accounts_erased: t("field.accounts_erased"),
    table: t("field.table"),
    category: t("field.category"),
    purpose: t("field.purpose"),
    columns_naming_people: t("field.columns_naming_people"),
    what: t("field.what"),
    third_countries: t("field.third_countries"),
    federation: t("field.federation"),
    messages_default: t("field.messages_default"),
    room_policy_min: t("field.room_policy_min"),
    room_policy_max: t("field.room_policy_max"),
    media: t("field.media"),
    undelivered_device_messages: t("field.undelivered_device_messages"),
    key_backups: t("field.key_backups"),
    inactive_devices: t("field.inactive_devices"),
    rooms_with_own_policy: t("field.rooms_with_own_policy"),
    accounts: t("field.accounts"),
    audit_log: t("field.audit_log"),
    requested_max_lifetime_ms: t("field.requested_max_lifetime_ms"),
    requested_min_lifetime_ms: t("field.requested_min_lifetime_ms"),
    max_lifetime_in_force: t("field.max_lifetime_in_force"),
    active: t("field.active"),
    holds: t("field.holds"),
    measures: t("field.measures"),
    plaintext_room_exemptions: t("field.plaintext_room_exemptions"),
    reaction_keys_visible: t("field.reaction_keys_visible"),
    directory_finds_everyone: t("field.directory_finds_everyone"),
    audit_log_entries: t("field.audit_log_entries"),
    audit_latest_checkpoint: t("field.audit_latest_checkpoint"),
    audit_verifier_key: t("field.audit_verifier_key"),
    entries: t("field.entries"),
    ts: t("field.ts"),
    requested: t("field.requested"),
    max_lifetime: t("field.max_lifetime"),
    min_lifetime: t("field.min_lifetime"),
    max_lifetime_text: t("field.max_lifetime_text"),
    deleted_account: t("field.deleted_account"),
    deleted_events: t("field.deleted_events"),
    deleted_media: t("field.deleted_media"),
    deleted_media_bytes: t("field.deleted_media_bytes"),
    deleted_access_tokens: t("field.deleted_access_tokens"),
    deleted_account_data: t("field.deleted_account_data"),
    deleted_backup_keys: t("field.deleted_backup_keys"),
    deleted_backup_versions: t("field.deleted_backup_versions"),
    deleted_console_sessions: t("field.deleted_console_sessions"),
    deleted_cross_signing_keys: t("field.deleted_cross_signing_keys"),
    deleted_device_keys: t("field.deleted_device_keys"),
    deleted_device_list_changes: t("field.deleted_device_list_changes"),
    deleted_devices: t("field.deleted_devices"),
    deleted_directory_attributes: t("field.deleted_directory_attributes"),
    deleted_fallback_keys: t("field.deleted_fallback_keys"),
    deleted_filters: t("field.deleted_filters"),
    deleted_identity_links: t("field.deleted_identity_links"),
    deleted_key_signatures: t("field.deleted_key_signatures"),
    deleted_ldap_accounts: t("field.deleted_ldap_accounts"),
    deleted_login_tokens: t("field.deleted_login_tokens"),
    deleted_notification_counts: t("field.deleted_notification_counts"),
    deleted_notifications: t("field.deleted_notifications"),
    deleted_one_time_keys: t("field.deleted_one_time_keys"),
    deleted_push_outbox: t("field.deleted_push_outbox"),
    deleted_pushers: t("field.deleted_pushers"),
    deleted_receipts: t("field.deleted_receipts"),
    deleted_sliding_sync_positions: t("field.deleted_sliding_sync_positions"),
    deleted_sliding_sync_rooms: t("field.deleted_sliding_sync_rooms"),
    deleted_sso_devices: t("field.deleted_sso_devices"),
    deleted_staff_roles: t("field.deleted_staff_roles"),
    deleted_to_device: t("field.deleted_to_device"),
    deleted_txn_ids: t("field.deleted_txn_ids"),
    deleted_typing: t("field.deleted_typing"),
    deleted_uia_sessions: t("field.deleted_uia_sessions"),
    kept_events_under_hold: t("field.kept_events_under_hold"),
    kept_media_under_hold: t("field.kept_media_under_hold"),
    pseudonymized_aliases: t("field.pseudonymized_aliases"),
    pseudonymized_holds: t("field.pseudonymized_holds"),
    pseudonymized_memberships: t("field.pseudonymized_memberships"),
    pseudonymized_mentions: t("field.pseudonymized_mentions"),
    pseudonymized_other_events: t("field.pseudonymized_other_events"),
    pseudonymized_rooms: t("field.pseudonymized_rooms"),
    pseudonymized_state_events: t("field.pseudonymized_state_events"),
    jobs_leader: t("field.jobs_leader"),
    events_sent: t("field.events_sent"),
    sync_responses: t("field.sync_responses"),
    purge_failures: t("field.purge_failures"),
    db_connections_open: t("field.db_connections_open"),
    db_connections_max: t("field.db_connections_max"),
  };
}

let labels = null;
let labelsLang = "";

/** The label for a field name: from the catalog when known, else the name itself. */
export function label(key) {
  const now = document.documentElement.lang;
  if (!labels || labelsLang !== now) {
    labels = fieldLabels();
    labelsLang = now;
  }
  return labels[key] ?? String(key);
}

function isPrimitive(v) {
  return v === null || typeof v !== "object";
}

/** A value as text or a node, formatted by its field name. */
export function value(v, key = "") {
  if (v === null || v === undefined) return t("common.none");
  if (typeof v === "boolean") return v ? t("common.yes") : t("common.no");
  if (typeof v === "number") {
    if (key.endsWith("_ts") || key === "ts") return fmtDate(v);
    if (key.endsWith("_ms")) return fmtDuration(v);
    if (key.endsWith("_s")) return fmtDuration(v * 1000);
    if (key.endsWith("_bytes")) return fmtBytes(v);
    return fmtNumber(v);
  }
  if (typeof v === "string") {
    if (key.endsWith("_lifetime") || key === "purge_interval") return fmtLifetime(v);
    return v;
  }
  if (Array.isArray(v)) {
    if (v.length === 0) return t("common.none");
    if (v.every(isPrimitive)) return h("ul", { class: "list" }, v.map((item) => h("li", {}, value(item, ""))));
    if (v.every((o) => o && typeof o === "object" && !Array.isArray(o) && Object.values(o).every(isFlat))) {
      const keys = [...new Set(v.flatMap(Object.keys))];
      return table(
        keys.map((k) => ({ label: label(k), cell: (row) => flat(row[k], k) })),
        v,
      );
    }
    return h("ol", { class: "cards" }, v.map((item) => h("li", {}, value(item, key))));
  }
  // A lifetime as the record of processing writes it: { text, millis }.
  const keys = Object.keys(v);
  if (keys.length === 2 && "text" in v && "millis" in v) {
    return typeof v.millis === "number" ? fmtDuration(v.millis) : v.text;
  }
  return object(v);
}

function isFlat(v) {
  return isPrimitive(v) || (Array.isArray(v) && v.every(isPrimitive)) || ("text" in v && "millis" in v);
}

function flat(v, key) {
  if (Array.isArray(v)) return v.length ? v.map((x) => value(x, "")).join(", ") : t("common.none");
  return value(v, key);
}

/** An object as a definition list. */
export function object(o, cls = "facts") {
  const entries = Object.entries(o ?? {});
  if (entries.length === 0) return h("p", {}, t("common.none"));
  return dl(
    entries.map(([k, v]) => [label(k), value(v, k)]),
    cls,
  );
}
