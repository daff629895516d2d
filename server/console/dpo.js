// The data-protection officer's pages: retention, legal holds, erasure,
// subject-access exports and the record of processing (Art. 30). The audit
// log has its own module (audit.js).

import { announce, api, append, clear, confirmButton, dl, downloadLink, errorBox, errorText, field, fmtDate, fullUserId, fmtBytes, fmtDuration, h, msToDays, onSubmit, plural, seg, t, table } from "./lib.js";
import { label, object, value } from "./render.js";

const DAY_MS = 86_400_000;

function inForce(policy) {
  if (!policy || typeof policy !== "object") return t("common.unknown");
  if (!("max_lifetime" in policy)) return object(policy);
  return policy.max_lifetime === null ? t("retention.forever") : fmtDuration(policy.max_lifetime);
}

function requested(ms) {
  return typeof ms === "number" ? fmtDuration(ms) : t("retention.not_set");
}

/** A room's policy view: what applies and what the room asks for. */
function policyView(policy) {
  if (!policy || !("max_lifetime" in policy)) return object(policy ?? {});
  const extra = Object.fromEntries(Object.entries(policy).filter(([k]) => !["requested", "max_lifetime", "max_lifetime_text"].includes(k)));
  return h(
    "div",
    {},
    dl([
      [t("retention.in_force"), inForce(policy)],
      [t("retention.requested_max"), requested(policy.requested?.max_lifetime)],
      [t("retention.requested_min"), requested(policy.requested?.min_lifetime)],
    ]),
    Object.keys(extra).length ? object(extra) : null,
  );
}

// ---------------------------------------------------------------------------
// Retention

export async function renderRetention(section) {
  const overview = h("div");
  const form = h("form", { id: "room-policy" });
  const shown = h("div", { "aria-live": "polite" });
  section.append(overview, h("section", { "aria-labelledby": "set-h", class: "card" }, h("h2", { id: "set-h", tabindex: "-1" }, t("retention.set_title")), h("p", {}, t("retention.set_intro")), form, shown));

  const room = field(t("field.room_id"), { name: "room", required: true, spellcheck: "false", autocomplete: "off" }, { hint: t("retention.room_hint") });
  const max = field(t("retention.max_days"), { type: "number", min: "0", step: "any", inputmode: "decimal" }, { hint: t("retention.max_hint") });
  const min = field(t("retention.min_days"), { type: "number", min: "0", step: "any", inputmode: "decimal" }, { hint: t("retention.min_hint") });
  const error = errorBox();
  const save = h("button", { type: "submit", class: "primary", value: "save" }, t("retention.save"));
  const show = h("button", { type: "submit", value: "show", formnovalidate: true }, t("retention.show"));
  const reset = h("button", { type: "submit", value: "reset" }, t("retention.reset"));
  form.append(room.row, max.row, min.row, error, h("div", { class: "actions" }, save, show, reset));

  onSubmit(form, error, async (submitter) => {
    const roomId = room.input.value.trim();
    if (!roomId) {
      room.input.focus();
      return;
    }
    const what = submitter?.value ?? "save";
    if (what === "show") {
      const policy = await api("GET", `rooms/${seg(roomId)}/retention`);
      clear(shown).append(h("h3", {}, t("retention.policy_of", { room: roomId })), policyView(policy));
      max.input.value = msToDays(policy.requested?.max_lifetime);
      min.input.value = msToDays(policy.requested?.min_lifetime);
      return;
    }
    const body = {};
    if (what === "save") {
      if (max.input.value !== "") body.max_lifetime = Math.round(Number(max.input.value) * DAY_MS);
      if (min.input.value !== "") body.min_lifetime = Math.round(Number(min.input.value) * DAY_MS);
    }
    const answer = await api("PUT", `rooms/${seg(roomId)}/retention`, body);
    const done = what === "reset" ? t("retention.reset_ok", { room: roomId }) : t("retention.saved", { room: roomId });
    append(clear(shown), [
      h("p", { class: "notice ok" }, done),
      h("h3", {}, t("retention.policy_of", { room: roomId })),
      policyView(answer.policy),
      answer.event_id ? h("p", { class: "hint" }, t("retention.event", { event: answer.event_id })) : null,
    ]);
    await load();
    announce(done, "ok");
  });

  async function load() {
    const data = await api("GET", "retention");
    const rooms = data.rooms ?? [];
    const run = confirmButton(t("retention.purge_now"), t("retention.purge_q"), t("retention.purge_now"), async () => {
      const summary = await api("POST", "purge", {});
      await load();
      document.getElementById("purge-h")?.focus();
      announce(summary.errors?.length ? t("retention.purge_errors") : t("retention.purge_done"), summary.errors?.length ? "error" : "ok");
    }, { danger: false });
    clear(overview).append(
      h("section", { "aria-labelledby": "server-h" }, h("h2", { id: "server-h" }, t("retention.server_title")), h("p", { class: "hint" }, t("retention.server_hint")), object(data.server ?? {})),
      h(
        "section",
        { "aria-labelledby": "purge-h" },
        h("h2", { id: "purge-h", tabindex: "-1" }, t("retention.purge_title")),
        dl([[t("retention.next_purge"), data.next_purge_ts ? fmtDate(data.next_purge_ts) : t("retention.no_next")]]),
        h("h3", {}, t("retention.last_purge")),
        data.last_purge ? purgeSummary(data.last_purge) : h("p", {}, t("retention.no_last")),
        run,
      ),
      h(
        "section",
        { "aria-labelledby": "rooms-h" },
        h("h2", { id: "rooms-h" }, t("retention.rooms_title")),
        rooms.length
          ? table(
              [
                { label: t("field.room_id"), cell: (r) => h("code", {}, r.room_id) },
                { label: t("retention.in_force"), cell: (r) => inForce(r.policy) },
                { label: t("retention.requested_max"), cell: (r) => requested(r.policy?.requested?.max_lifetime) },
                { label: t("retention.requested_min"), cell: (r) => requested(r.policy?.requested?.min_lifetime) },
                {
                  label: t("common.actions"),
                  cell: (r) =>
                    h("button", {
                      type: "button",
                      class: "small",
                      "aria-label": t("retention.edit_room", { room: r.room_id }),
                      onclick: () => {
                        room.input.value = r.room_id;
                        max.input.value = msToDays(r.policy?.requested?.max_lifetime);
                        min.input.value = msToDays(r.policy?.requested?.min_lifetime);
                        max.input.focus();
                      },
                    }, t("retention.edit")),
                },
              ],
              rooms,
            )
          : h("p", {}, t("retention.no_rooms")),
      ),
    );
  }
  await load();
}

/** A purge's summary: as POST purge answers, or as the overview has it from the audit log ({ts, counts}). */
function purgeSummary(purge) {
  const raw = purge.counts ? { started_ts: purge.ts, ...purge.counts } : purge;
  const order = ["started_ts", "duration_ms", "events", "media_files", "media_bytes", "to_device", "backup_keys", "devices", "kept_under_hold", "errors"];
  const summary = Object.fromEntries([...order.filter((k) => k in raw).map((k) => [k, raw[k]]), ...Object.entries(raw).filter(([k]) => !order.includes(k))]);
  const failed = Array.isArray(summary.errors) ? summary.errors.length > 0 : summary.errors > 0;
  return h(
    "div",
    { class: failed ? "notice fail" : null },
    failed ? h("p", { class: "strong" }, t("retention.purge_failed")) : null,
    object(summary),
  );
}

// ---------------------------------------------------------------------------
// Legal holds

function heldBy(hold) {
  return hold.set_by ?? hold.created_by ?? t("common.unknown");
}

function heldSince(hold) {
  return fmtDate(hold.set_ts ?? hold.created_ts);
}

function scopeName(scope) {
  const names = { user: t("holds.scope_user"), room: t("holds.scope_room") };
  return names[scope] ?? scope;
}

export async function renderHolds(section) {
  const list = h("div");
  const includeReleased = field(t("holds.include_released"), { type: "checkbox", checked: true });
  includeReleased.input.addEventListener("change", () => load().catch((e) => announce(errorText(e), "error")));

  async function load() {
    const { holds } = await api("GET", `holds?include_released=${includeReleased.input.checked}`);
    clear(list);
    if (!holds.length) {
      list.append(h("p", {}, t("holds.none")));
      return;
    }
    list.append(
      table(
        [
          { label: t("field.case_id"), cell: (x) => h("strong", {}, x.case_id) },
          { label: t("holds.covers"), cell: (x) => h("span", {}, scopeName(x.scope), ": ", h("code", {}, x.target)) },
          { label: t("holds.reason"), cell: (x) => x.reason },
          { label: t("holds.placed"), cell: (x) => t("holds.by_at", { who: heldBy(x), when: heldSince(x) }) },
          {
            label: t("holds.state"),
            cell: (x) =>
              x.released_ts
                ? t("holds.released_by_at", { who: x.released_by ?? t("common.unknown"), when: fmtDate(x.released_ts) })
                : h("span", { class: "badge active" }, t("holds.active")),
          },
          {
            label: t("common.actions"),
            cell: (x) =>
              x.released_ts
                ? ""
                : confirmButton(t("holds.release"), t("holds.release_q", { case: x.case_id, target: x.target }), t("holds.release"), async () => {
                    await api("POST", `holds/${seg(x.hold_id)}/release`, {});
                    await load();
                    document.getElementById("holds-h")?.focus();
                    announce(t("holds.released_ok", { case: x.case_id }), "ok");
                  }, { small: true }),
          },
        ],
        holds,
      ),
    );
  }

  const scope = field(t("field.scope"), { name: "scope" }, { kind: "select", options: [["user", t("holds.scope_user")], ["room", t("holds.scope_room")]] });
  const target = field(t("holds.target"), { name: "target", required: true, spellcheck: "false", autocomplete: "off" }, { hint: t("holds.target_hint") });
  const caseId = field(t("field.case_id"), { name: "case_id", required: true, autocomplete: "off" });
  const reason = field(t("holds.reason"), { name: "reason", required: true, rows: "3" }, { kind: "textarea" });
  const error = errorBox();
  const form = h("form", { id: "place-hold" }, scope.row, target.row, caseId.row, reason.row, error, h("button", { type: "submit", class: "primary" }, t("holds.place")));
  onSubmit(form, error, async () => {
    const hold = await api("POST", "holds", {
      scope: scope.input.value,
      target: scope.input.value === "user" ? fullUserId(target.input.value) : target.input.value.trim(),
      case_id: caseId.input.value.trim(),
      reason: reason.input.value.trim(),
    });
    target.input.value = "";
    caseId.input.value = "";
    reason.input.value = "";
    await load();
    announce(t("holds.placed_ok", { case: hold.case_id ?? "", target: hold.target ?? "" }), "ok");
  });

  section.append(
    h("p", {}, t("holds.intro")),
    h("section", { "aria-labelledby": "holds-h" }, h("h2", { id: "holds-h", tabindex: "-1" }, t("holds.list")), includeReleased.row, list),
    h("section", { "aria-labelledby": "place-h", class: "card" }, h("h2", { id: "place-h" }, t("holds.place_title")), form),
  );
  await load();
}

// ---------------------------------------------------------------------------
// Erasure

function localpart(userId) {
  return String(userId).replace(/^@/, "").split(":")[0] || "user";
}

export async function renderErasure(section) {
  const user = field(t("field.user_id"), { name: "user", required: true, spellcheck: "false", autocomplete: "off", autocapitalize: "none", id: "erase-user" }, { hint: t("erasure.user_hint") });
  const error = errorBox();
  const form = h("form", { id: "erase-preview" }, user.row, error, h("button", { type: "submit", class: "primary" }, t("erasure.preview")));
  const preview = h("div");
  section.append(h("p", {}, t("erasure.intro")), h("section", { class: "card", "aria-labelledby": "who-h" }, h("h2", { id: "who-h" }, t("erasure.who")), form), preview);

  onSubmit(form, error, async () => {
    const userId = fullUserId(user.input.value);
    const data = await api("GET", `users/${seg(userId)}/erasure`);
    showPreview(preview, data);
  });
}

function showPreview(container, data) {
  const userId = data.user_id;
  const heading = h("h2", { tabindex: "-1", id: "preview-h" }, t("erasure.preview_title", { user: userId }));
  const box = h("section", { "aria-labelledby": "preview-h", class: "card" }, heading);
  clear(container).append(box);
  if (data.exists === false && !data.erased) {
    box.append(h("p", { class: "notice warn" }, t("erasure.no_such_user", { user: userId })));
    heading.focus();
    return;
  }
  if (data.erased) box.append(h("p", { class: "notice warn" }, t("erasure.already", { user: userId })));
  const holds = data.holds ?? [];
  // What goes: names with counts ({"deleted_devices": 2}), or bare names.
  const deletes = Array.isArray(data.deletes) ? data.deletes.map((k) => [k, null]) : Object.entries(data.deletes ?? {});
  const line = ([k, n]) => h("li", {}, n === null ? label(k) : `${label(k)}: ${value(n, k)}`);
  append(box, [
    h("h3", {}, t("erasure.deletes")),
    deletes.length ? h("ul", { class: "deletes" }, deletes.map(line)) : h("p", {}, t("common.none")),
    Array.isArray(data.keeps) && data.keeps.length ? [h("h3", {}, t("erasure.keeps")), h("ul", { class: "keeps" }, data.keeps.map((k) => line([k, null])))] : null,
    h("h3", {}, t("erasure.holds")),
    holds.length
      ? h(
          "div",
          { class: "notice warn" },
          h("p", {}, t("erasure.holds_text")),
          h("ul", {}, holds.map((x) => h("li", {}, t("erasure.hold_line", { case: x.case_id, scope: scopeName(x.scope), target: x.target, reason: x.reason })))),
        )
      : h("p", {}, t("erasure.no_holds")),
  ]);

  const confirm = field(t("erasure.confirm_label", { user: userId }), { name: "confirm", required: true, spellcheck: "false", autocomplete: "off", autocapitalize: "none", id: "erase-confirm" }, { hint: t("erasure.confirm_hint") });
  const error = errorBox();
  const form = h("form", { id: "erase-confirm-form", class: "danger-zone" }, h("p", { class: "strong" }, t("erasure.final")), confirm.row, error, h("button", { type: "submit", class: "danger", id: "erase-submit" }, t("erasure.erase")));
  const receipt = h("div");
  onSubmit(form, error, async () => {
    if (confirm.input.value.trim() !== userId) {
      error.textContent = t("erasure.mismatch", { user: userId });
      error.hidden = false;
      confirm.input.focus();
      return;
    }
    const answer = await api("POST", `users/${seg(userId)}/erase`, { confirm: confirm.input.value.trim() });
    form.remove();
    showReceipt(receipt, answer, userId);
  });
  box.append(form, receipt);
  heading.focus();
}

/** The receipt: who, then what was kept and deleted; categories with nothing in them folded away. */
function receiptView(receipt) {
  const first = ["user_id", "replaced_by", "pseudonym", "erased_ts", "complete", "already_erased", "audit_seq", "kept_under_hold"];
  const rest = Object.keys(receipt).filter((k) => !first.includes(k) && k !== "counts");
  const pairs = [...first, ...rest].filter((k) => k in receipt).map((k) => [label(k), value(receipt[k], k)]);
  if (receipt.counts && typeof receipt.counts === "object") {
    const entries = Object.entries(receipt.counts);
    const some = entries.filter(([, n]) => n);
    const none = entries.filter(([, n]) => !n);
    pairs.push([
      label("counts"),
      h(
        "div",
        {},
        some.length ? object(Object.fromEntries(some)) : h("p", {}, t("common.none")),
        none.length
          ? h("details", {}, h("summary", {}, plural(none.length, t("erasure.zero_counts_one"), t("erasure.zero_counts", { count: none.length }))), h("ul", { class: "list" }, none.map(([k]) => h("li", {}, label(k)))))
          : null,
      ),
    ]);
  }
  return dl(pairs);
}

function showReceipt(container, receipt, userId) {
  const heading = h("h3", { tabindex: "-1", id: "receipt-h" }, t("erasure.receipt"));
  const json = new Blob([JSON.stringify(receipt, null, 2)], { type: "application/json" });
  const complete = receipt.complete !== false;
  clear(container).append(
    h(
      "section",
      { "aria-labelledby": "receipt-h", class: "receipt" },
      heading,
      h("p", { class: complete ? "notice ok" : "notice warn" }, complete ? t("erasure.done", { user: userId }) : t("erasure.done_kept", { user: userId })),
      receiptView(receipt),
      h("p", {}, downloadLink(json, `erasure-receipt-${localpart(userId)}.json`, t("erasure.download_receipt"))),
    ),
  );
  announce(t("erasure.done", { user: userId }), "ok");
  heading.focus();
}

// ---------------------------------------------------------------------------
// Subject-access exports

export async function renderExports(section) {
  const user = field(t("field.user_id"), { name: "user", required: true, spellcheck: "false", autocomplete: "off", autocapitalize: "none" });
  const key = field(t("exports.key"), { name: "recipient_key", required: true, spellcheck: "false", autocomplete: "off", class: "mono" }, { hint: t("exports.key_hint") });
  const error = errorBox();
  const result = h("div", { "aria-live": "polite" });
  const form = h("form", { id: "export-form" }, user.row, key.row, error, h("button", { type: "submit", class: "primary" }, t("exports.create")));
  onSubmit(form, error, async () => {
    const userId = fullUserId(user.input.value);
    const blob = await api("POST", `users/${seg(userId)}/export`, { recipient_key: key.input.value.trim() }, { blob: true });
    const name = `export-${localpart(userId)}.sealed`;
    const link = downloadLink(new Blob([blob], { type: "application/octet-stream" }), name, t("exports.download", { file: name }));
    link.id = "export-download";
    clear(result).append(
      h("div", { class: "notice ok" }, h("p", {}, t("exports.ready", { user: userId, size: fmtBytes(blob.size) })), h("p", {}, link), h("p", { class: "hint" }, t("exports.open_hint"))),
    );
    announce(t("exports.ready", { user: userId, size: fmtBytes(blob.size) }), "ok");
    link.focus();
  });
  section.append(
    h("p", {}, t("exports.intro")),
    h("ol", { class: "steps" }, h("li", {}, t("exports.step1")), h("li", {}, t("exports.step2")), h("li", {}, t("exports.step3"))),
    h("section", { class: "card", "aria-labelledby": "export-h" }, h("h2", { id: "export-h" }, t("exports.form_title")), form, result),
  );
}

// ---------------------------------------------------------------------------
// Record of processing (Art. 30)

function sectionTitle(key) {
  const names = {
    purposes: t("processing.purposes"),
    data_subjects: t("processing.data_subjects"),
    data_categories: t("processing.data_categories"),
    pseudonymous_data: t("processing.pseudonymous_data"),
    no_personal_data: t("processing.no_personal_data"),
    recipients: t("processing.recipients"),
    transfers: t("processing.transfers"),
    retention: t("processing.retention"),
    legal_holds: t("processing.legal_holds"),
    security_measures: t("processing.security_measures"),
  };
  return names[key] ?? label(key);
}

export async function renderProcessing(section) {
  const record = await api("GET", "processing?format=json");
  const meta = ["generated_ts", "server_name", "controller", "dpo_contact", "format", "version"];
  const json = new Blob([JSON.stringify(record, null, 2)], { type: "application/json" });
  const print = h("button", { type: "button", onclick: () => window.print() }, t("processing.print"));
  section.append(
    h("p", { class: "no-print" }, t("processing.intro")),
    h("div", { class: "actions no-print" }, print, downloadLink(json, "processing-record.json", t("processing.download"))),
    dl(meta.filter((k) => k in record).map((k) => [label(k), value(record[k], k)])),
  );
  for (const [key, v] of Object.entries(record)) {
    if (meta.includes(key)) continue;
    const id = `proc-${key}`;
    section.append(h("section", { "aria-labelledby": id, class: "record" }, h("h2", { id }, sectionTitle(key)), value(v, key)));
  }
}
