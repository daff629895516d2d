// The audit log page: verification in this browser with the audit crate
// compiled to WebAssembly (assets/audit_verify.wasm, loaded by
// assets/verify.mjs), against the last checkpoint this browser verified;
// and the pseudonymous entries, filtered by action and time.

import { announce, api, clear, confirmButton, dl, errorBox, errorText, field, fmtDate, fmtNumber, h, onSubmit, plural, t, table } from "./lib.js";
import { label, value } from "./render.js";

const WASM = "/_cloister/console/assets/audit_verify.wasm";
const TRUSTED_PREFIX = "cloister.console.trusted.";
const WITNESSES_PREFIX = "cloister.console.witnesses.";

export function actionName(action) {
  const names = {
    login: t("audit.action.login"),
    login_failed: t("audit.action.login_failed"),
    account_created: t("audit.action.account_created"),
    password_changed: t("audit.action.password_changed"),
    account_deactivated: t("audit.action.account_deactivated"),
    device_added: t("audit.action.device_added"),
    device_deleted: t("audit.action.device_deleted"),
    policy_changed: t("audit.action.policy_changed"),
    hold_set: t("audit.action.hold_set"),
    hold_released: t("audit.action.hold_released"),
    export: t("audit.action.export"),
    erasure: t("audit.action.erasure"),
    purge_run: t("audit.action.purge_run"),
    admin_call: t("audit.action.admin_call"),
  };
  return names[action] ?? action;
}

let verifierPromise = null;

/** The WebAssembly verifier, or null when this build has none. */
function verifier() {
  verifierPromise ??= (async () => {
    const response = await fetch(WASM, { credentials: "same-origin" });
    if (!response.ok) return null;
    const { loadVerifier } = await import("./verify.mjs");
    return loadVerifier(await response.arrayBuffer());
  })().catch(() => null);
  return verifierPromise;
}

function remembered(key) {
  try {
    return localStorage.getItem(TRUSTED_PREFIX + key) ?? "";
  } catch {
    return "";
  }
}

function remember(key, note) {
  try {
    if (note) localStorage.setItem(TRUSTED_PREFIX + key, note);
    else localStorage.removeItem(TRUSTED_PREFIX + key);
  } catch {
    // storage disabled: nothing is remembered
  }
}

/** The witness keys and required count kept for a log: {keys, min}. */
function witnessSettings(key) {
  try {
    const kept = JSON.parse(localStorage.getItem(WITNESSES_PREFIX + key) ?? "{}");
    return { keys: String(kept.keys ?? ""), min: kept.min ?? "" };
  } catch {
    return { keys: "", min: "" };
  }
}

function keepWitnessSettings(key, settings) {
  try {
    localStorage.setItem(WITNESSES_PREFIX + key, JSON.stringify(settings));
  } catch {
    // storage disabled: asked again next time
  }
}

/** The size a checkpoint note commits to (its second line). */
function noteSize(note) {
  const n = Number(String(note).split("\n")[1]);
  return Number.isFinite(n) ? n : null;
}

export async function renderAudit(section) {
  const verify = h("section", { class: "card", "aria-labelledby": "verify-h" });
  const entries = h("section", { "aria-labelledby": "entries-h" });
  section.append(verify, entries);
  await Promise.all([renderVerify(verify), renderEntries(entries)]);
}

// ---------------------------------------------------------------------------
// Verification

async function renderVerify(box) {
  const info = await api("GET", "audit/key");
  const key = field(t("audit.key"), { id: "verifier-key", value: info.verifier_key ?? "", spellcheck: "false", autocomplete: "off", class: "mono" }, { hint: t("audit.key_hint") });
  const trustedLine = h("p", { id: "trusted-line" });
  const result = h("div", { id: "verify-result" });
  const busy = h("p", { class: "hint", hidden: true, "aria-live": "polite" }, t("audit.verifying"));
  const unavailable = h("p", { class: "notice warn", hidden: true, id: "verify-unavailable" }, t("audit.unavailable"));

  const showTrusted = () => {
    const note = remembered(key.input.value.trim());
    const size = note ? noteSize(note) : null;
    const n = size ?? 0;
    trustedLine.textContent = note ? plural(n, t("audit.trusted_one"), t("audit.trusted", { size: fmtNumber(n) })) : t("audit.no_trusted");
  };
  const witnessKeys = field(t("audit.witnesses"), { id: "witness-keys", rows: 3, spellcheck: "false", autocomplete: "off", class: "mono" }, { hint: t("audit.witnesses_hint"), kind: "textarea" });
  const witnessMin = field(t("audit.witness_min"), { id: "witness-min", type: "number", min: 0, step: 1, inputmode: "numeric" }, { hint: t("audit.witness_min_hint") });
  const showWitnesses = () => {
    const kept = witnessSettings(key.input.value.trim());
    witnessKeys.input.value = kept.keys;
    witnessMin.input.value = kept.min;
  };
  key.input.addEventListener("change", () => {
    showTrusted();
    showWitnesses();
  });
  showTrusted();
  showWitnesses();

  const fromServer = h("button", { type: "button", class: "primary", id: "verify-server" }, t("audit.verify_server"));
  const file = field(t("audit.file"), { type: "file", accept: ".json,application/json", id: "verify-file" }, { hint: t("audit.file_hint") });
  const fromFile = h("button", { type: "button", id: "verify-file-button" }, t("audit.verify_file"));
  const forget = confirmButton(t("audit.forget"), t("audit.forget_q"), t("audit.forget"), async () => {
    remember(key.input.value.trim(), "");
    showTrusted();
    announce(t("audit.forgotten"), "ok");
  }, { small: true, quiet: true });

  async function run(getBytes, source) {
    const v = await verifier();
    if (!v) {
      unavailable.hidden = false;
      announce(t("audit.unavailable"), "warn");
      return;
    }
    const keyText = key.input.value.trim();
    busy.hidden = false;
    clear(result);
    try {
      const bytes = await getBytes();
      const trusted = remembered(keyText);
      const witnesses = witnessKeys.input.value.split("\n").map((l) => l.trim()).filter(Boolean);
      const min = witnessMin.input.value === "" ? (witnesses.length ? 1 : 0) : Math.max(0, Math.floor(Number(witnessMin.input.value)));
      keepWitnessSettings(keyText, { keys: witnessKeys.input.value, min: witnessMin.input.value });
      const report = v.verify(bytes, keyText, trusted, witnesses, min);
      showReport(result, report, source, Boolean(trusted));
      if (report.ok && report.latest_note) {
        remember(keyText, report.latest_note);
        showTrusted();
      }
      announce(report.ok ? t("audit.ok_title") : t("audit.fail_title"), report.ok ? "ok" : "error");
    } catch (e) {
      result.append(h("p", { class: "error", role: "alert" }, errorText(e)));
    } finally {
      busy.hidden = true;
    }
  }

  fromServer.addEventListener("click", () =>
    run(async () => new Uint8Array(await (await api("GET", "audit/export", undefined, { blob: true })).arrayBuffer()), t("audit.source_server")),
  );
  fromFile.addEventListener("click", () => {
    const chosen = file.input.files?.[0];
    if (!chosen) {
      announce(t("audit.no_file"), "warn");
      file.input.focus();
      return;
    }
    run(async () => new Uint8Array(await chosen.arrayBuffer()), t("audit.source_file", { file: chosen.name }));
  });

  box.append(
    h("h2", { id: "verify-h" }, t("audit.verify_title")),
    h("p", {}, t("audit.verify_intro")),
    dl([[t("audit.origin"), info.origin ?? t("common.unknown")]]),
    key.row,
    h("div", { class: "trusted" }, trustedLine, forget),
    h("details", { class: "witnesses", open: witnessKeys.input.value ? true : null }, h("summary", {}, t("audit.witnesses_title")), witnessKeys.row, witnessMin.row),
    h("div", { class: "actions" }, fromServer, h("a", { href: "/_cloister/console/api/audit/export", download: "audit-export.json", class: "button" }, t("audit.download"))),
    h("div", { class: "file-verify" }, file.row, fromFile),
    unavailable,
    busy,
    result,
  );
  // Say at once when this build has no verifier.
  verifier().then((v) => {
    if (!v) {
      unavailable.hidden = false;
      fromServer.disabled = true;
      fromFile.disabled = true;
    }
  });
}

function showReport(container, report, source, usedTrusted) {
  const facts = dl([
    [t("audit.source"), source],
    [t("field.entries"), fmtNumber(report.entries ?? 0)],
    [t("audit.checkpoints"), fmtNumber(report.checkpoints ?? 0)],
    [t("audit.checkpoints_matching"), fmtNumber(report.checkpoints_matching ?? 0)],
    [t("audit.latest_size"), fmtNumber(report.latest_size ?? 0)],
    [t("audit.unsigned"), fmtNumber(report.unsigned_entries ?? 0)],
    [t("audit.against_trusted"), usedTrusted ? t("common.yes") : t("common.no")],
    [t("audit.witnessed_by"), report.witnessed_by?.length ? report.witnessed_by.join(", ") : t("audit.no_witnesses")],
  ]);
  const heading = h("h3", { tabindex: "-1" }, report.ok ? t("audit.ok_title") : t("audit.fail_title"));
  if (report.ok) {
    container.append(h("div", { class: "notice ok verify-ok", id: "verify-ok" }, heading, h("p", {}, t("audit.ok_text")), facts, h("p", { class: "hint" }, t("audit.remembered_now"))));
  } else {
    container.append(
      h(
        "div",
        { class: "notice fail verify-fail", id: "verify-fail", role: "alert" },
        heading,
        h("p", { class: "strong" }, t("audit.fail_text")),
        h("ul", {}, (report.failures ?? []).map((f) => h("li", {}, f))),
        facts,
      ),
    );
  }
  heading.focus();
}

// ---------------------------------------------------------------------------
// Entries

function toMs(input) {
  return input.value ? new Date(input.value).getTime() : null;
}

async function renderEntries(box) {
  const action = field(t("audit.filter_action"), { name: "action" }, { kind: "select", options: [["", t("audit.all_actions")]] });
  const since = field(t("audit.since"), { type: "datetime-local", name: "since" });
  const until = field(t("audit.until"), { type: "datetime-local", name: "until" });
  const error = errorBox();
  const form = h("form", { class: "filters", id: "audit-filter" }, action.row, since.row, until.row, h("button", { type: "submit" }, t("audit.apply")));
  const list = h("div", { "aria-live": "polite" });
  const more = h("button", { type: "button", hidden: true }, t("audit.older"));
  let rows = [];
  let nextBefore = null;
  let actionsKnown = false;

  async function load(append) {
    const params = new URLSearchParams({ limit: "100" });
    if (action.input.value) params.append("action", action.input.value);
    const from = toMs(since.input);
    const to = toMs(until.input);
    if (from !== null) params.append("since", String(from));
    if (to !== null) params.append("until", String(to));
    if (append && nextBefore !== null) params.append("before", String(nextBefore));
    const data = await api("GET", `audit/entries?${params}`);
    if (!actionsKnown && Array.isArray(data.actions)) {
      for (const name of data.actions) action.input.append(h("option", { value: name }, actionName(name)));
      actionsKnown = true;
    }
    rows = append ? rows.concat(data.entries) : data.entries;
    nextBefore = data.next_before ?? null;
    more.hidden = nextBefore === null;
    clear(list);
    if (!rows.length) {
      list.append(h("p", {}, t("audit.no_entries")));
      return;
    }
    list.append(
      table(
        [
          { label: t("audit.index"), cell: (e) => fmtNumber(e.seq ?? e.index) },
          { label: t("field.ts"), cell: (e) => fmtDate(e.ts) },
          { label: t("audit.column_action"), cell: (e) => actionName(e.action) },
          { label: t("audit.actor"), cell: (e) => (e.actor === "system" ? t("audit.system") : h("code", { class: "pseudonym" }, e.actor)) },
          { label: t("audit.target"), cell: (e) => (e.target ? h("code", { class: "pseudonym" }, e.target) : "") },
          {
            label: t("audit.details"),
            cell: (e) => {
              const details = Object.entries(e.details ?? {});
              return details.length ? h("ul", { class: "plain" }, details.map(([k, v]) => h("li", {}, `${label(k)}: `, value(v, k)))) : "";
            },
          },
        ],
        rows,
        t("audit.shown", { count: fmtNumber(rows.length) }),
      ),
    );
  }
  onSubmit(form, error, () => load(false));
  more.addEventListener("click", async () => {
    more.disabled = true;
    try {
      await load(true);
    } catch (e) {
      announce(errorText(e), "error");
    } finally {
      more.disabled = false;
    }
  });
  box.append(h("h2", { id: "entries-h" }, t("audit.entries_title")), h("p", {}, t("audit.entries_intro")), form, error, list, more);
  await load(false);
}
