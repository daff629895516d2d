// The operator's pages: users (search, create, one user's devices, password
// reset, deactivation), registration tokens and server health.

import { announce, api, append, clear, confirmButton, dl, errorBox, errorText, field, fmtDate, fmtNumber, h, onSubmit, seg, t, table } from "./lib.js";
import { label, object, value } from "./render.js";

function roleNames(roles) {
  const names = { operator: t("role.operator"), dpo: t("role.dpo") };
  return roles?.length ? roles.map((r) => names[r] ?? r).join(", ") : t("common.none");
}

function userLink(userId) {
  return h("a", { href: `#/users/${seg(userId)}` }, userId);
}

function statusText(user) {
  return user.deactivated ? t("users.deactivated") : t("users.active");
}

// ---------------------------------------------------------------------------
// Users

export async function renderUsers(section) {
  const results = h("div", { class: "results", "aria-live": "polite" });
  const q = field(t("users.search_label"), { type: "search", name: "q", autocomplete: "off", spellcheck: "false" });
  const searchError = errorBox();
  const search = h(
    "form",
    { role: "search", class: "inline" },
    q.row,
    h("button", { type: "submit" }, t("users.search")),
  );

  const more = h("button", { type: "button", hidden: true }, t("users.more"));
  let shown = [];
  let next = null;

  async function load(append = false) {
    const params = new URLSearchParams({ q: q.input.value.trim(), limit: "50" });
    if (append && next) params.append("from", next);
    const answer = await api("GET", `users?${params}`);
    shown = append ? shown.concat(answer.users) : answer.users;
    next = answer.next ?? null;
    more.hidden = !next;
    clear(results);
    if (!shown.length) {
      results.append(h("p", {}, t("users.none")));
      return;
    }
    const columns = [
      { label: t("field.user_id"), cell: (u) => userLink(u.user_id) },
      { label: t("users.admin"), cell: (u) => (u.admin ? t("common.yes") : t("common.no")) },
      { label: t("users.status"), cell: statusText },
      // Roles are listed when the server sends them (always on a user's own page).
      shown.some((u) => Array.isArray(u.roles)) ? { label: t("users.roles"), cell: (u) => roleNames(u.roles) } : null,
      { label: t("users.created"), cell: (u) => fmtDate(u.created_ts) },
    ].filter(Boolean);
    results.append(table(columns, shown, t("users.found", { count: fmtNumber(shown.length) })));
  }
  more.addEventListener("click", () => load(true).catch((e) => announce(errorText(e), "error")));
  onSubmit(search, searchError, () => load(false));

  const localpart = field(t("users.localpart"), { name: "localpart", required: true, autocomplete: "off", spellcheck: "false", autocapitalize: "none" }, { hint: t("users.localpart_hint") });
  const password = field(t("users.password"), { name: "password", type: "password", required: true, autocomplete: "new-password" });
  const admin = field(t("users.make_admin"), { name: "admin", type: "checkbox" });
  const createError = errorBox();
  const created = h("div", { "aria-live": "polite" });
  const create = h(
    "form",
    { id: "create-user" },
    localpart.row,
    password.row,
    admin.row,
    createError,
    h("button", { type: "submit", class: "primary" }, t("users.create")),
  );
  onSubmit(create, createError, async () => {
    const answer = await api("POST", "users", {
      localpart: localpart.input.value.trim(),
      password: password.input.value,
      admin: admin.input.checked,
    });
    password.input.value = "";
    localpart.input.value = "";
    admin.input.checked = false;
    clear(created).append(h("p", { class: "notice ok" }, t("users.created_ok", { user: answer.user_id }), " ", userLink(answer.user_id)));
    announce(t("users.created_ok", { user: answer.user_id }), "ok");
    await load(false);
  });

  section.append(
    h("section", { "aria-labelledby": "find-h" }, h("h2", { id: "find-h" }, t("users.find")), search, searchError, results, more),
    h("section", { "aria-labelledby": "create-h", class: "card" }, h("h2", { id: "create-h" }, t("users.create_title")), create, created),
  );
  await load(false);
}

// ---------------------------------------------------------------------------
// One user

export async function renderUser(section, userId, heading) {
  heading.textContent = t("user.title", { user: userId });
  document.title = `${heading.textContent} · ${t("app.title")}`;
  const body = h("div");
  section.append(h("p", {}, h("a", { href: "#/users" }, t("user.back"))), body);

  async function load() {
    const user = await api("GET", `users/${seg(userId)}`);
    clear(body);
    body.append(
      dl([
        [t("field.user_id"), user.user_id],
        [t("users.admin"), user.admin ? t("common.yes") : t("common.no")],
        [t("users.status"), statusText(user)],
        [t("users.roles"), roleNames(user.roles)],
        [t("users.created"), fmtDate(user.created_ts)],
      ]),
    );

    const devices = user.devices ?? [];
    body.append(
      h(
        "section",
        { "aria-labelledby": "devices-h" },
        h("h2", { id: "devices-h" }, t("user.devices")),
        devices.length
          ? table(
              [
                { label: t("user.device_id"), cell: (d) => h("code", {}, d.device_id) },
                { label: t("user.device_name"), cell: (d) => d.display_name ?? t("common.none") },
                { label: t("user.last_seen"), cell: (d) => (d.last_seen_ts ? fmtDate(d.last_seen_ts) : t("common.unknown")) },
                {
                  label: t("common.actions"),
                  cell: (d) =>
                    confirmButton(
                      t("user.sign_out_device"),
                      t("user.sign_out_device_q", { device: d.device_id }),
                      t("user.sign_out_device"),
                      async () => {
                        await api("DELETE", `users/${seg(userId)}/devices/${seg(d.device_id)}`);
                        await load();
                        heading.focus();
                        announce(t("user.device_signed_out", { device: d.device_id }), "ok");
                      },
                      { small: true },
                    ),
                },
              ],
              devices,
            )
          : h("p", {}, t("user.no_devices")),
      ),
    );

    const password = field(t("user.new_password"), { type: "password", required: true, autocomplete: "new-password" }, { hint: t("user.reset_hint") });
    const resetError = errorBox();
    const reset = h("form", {}, password.row, resetError, h("button", { type: "submit" }, t("user.reset")));
    onSubmit(reset, resetError, async () => {
      await api("POST", `users/${seg(userId)}/password`, { password: password.input.value });
      password.input.value = "";
      await load();
      announce(t("user.reset_ok", { user: userId }), "ok");
    });
    body.append(h("section", { "aria-labelledby": "reset-h", class: "card" }, h("h2", { id: "reset-h" }, t("user.reset_title")), reset));

    const deactivate = h("section", { "aria-labelledby": "deact-h", class: "card danger-zone" }, h("h2", { id: "deact-h" }, t("user.deactivate_title")));
    if (user.deactivated) {
      deactivate.append(h("p", {}, t("user.is_deactivated")));
    } else {
      deactivate.append(
        h("p", {}, t("user.deactivate_text")),
        confirmButton(t("user.deactivate"), t("user.deactivate_q", { user: userId }), t("user.deactivate"), async () => {
          await api("POST", `users/${seg(userId)}/deactivate`, {});
          await load();
          heading.focus();
          announce(t("user.deactivated_ok", { user: userId }), "ok");
        }),
      );
    }
    body.append(deactivate);
  }
  await load();
}

// ---------------------------------------------------------------------------
// Registration tokens

export async function renderTokens(section) {
  const list = h("div");
  const fresh = h("div", { "aria-live": "polite" });

  async function load() {
    const { tokens } = await api("GET", "registration_tokens");
    clear(list);
    if (!tokens.length) {
      list.append(h("p", {}, t("tokens.none")));
      return;
    }
    list.append(
      table(
        [
          { label: t("tokens.id"), cell: (k) => h("code", {}, k.id) },
          {
            label: t("tokens.uses"),
            cell: (k) =>
              k.uses_allowed === null || k.uses_allowed === undefined
                ? t("tokens.uses_unlimited", { uses: value(k.uses) })
                : t("tokens.uses_of", { uses: value(k.uses), allowed: value(k.uses_allowed) }),
          },
          {
            label: t("tokens.expires"),
            cell: (k) => (k.expiry_ts ? (k.expiry_ts < Date.now() ? t("tokens.expired", { date: fmtDate(k.expiry_ts) }) : fmtDate(k.expiry_ts)) : t("tokens.never")),
          },
          { label: t("users.created"), cell: (k) => fmtDate(k.created_ts) },
          {
            label: t("common.actions"),
            cell: (k) =>
              confirmButton(t("tokens.delete"), t("tokens.delete_q", { id: k.id }), t("tokens.delete"), async () => {
                await api("DELETE", `registration_tokens/${seg(k.id)}`);
                await load();
                document.getElementById("tokens-h")?.focus();
                announce(t("tokens.deleted", { id: k.id }), "ok");
              }, { small: true }),
          },
        ],
        tokens,
      ),
    );
  }

  const uses = field(t("tokens.uses_allowed"), { type: "number", min: "1", step: "1", inputmode: "numeric" }, { hint: t("tokens.uses_hint") });
  const hours = field(t("tokens.expiry_hours"), { type: "number", min: "1", step: "1", inputmode: "numeric" }, { hint: t("tokens.expiry_hint") });
  const error = errorBox();
  const form = h("form", { id: "create-token" }, uses.row, hours.row, error, h("button", { type: "submit", class: "primary" }, t("tokens.create")));
  onSubmit(form, error, async () => {
    const body = {};
    if (uses.input.value) body.uses_allowed = Number(uses.input.value);
    if (hours.input.value) body.expiry_hours = Number(hours.input.value);
    const answer = await api("POST", "registration_tokens", body);
    uses.input.value = "";
    hours.input.value = "";
    const code = h("code", { class: "secret", id: "new-token" }, answer.token);
    const copy = h("button", { type: "button", class: "small" }, t("tokens.copy"));
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(answer.token);
        announce(t("tokens.copied"), "ok");
      } catch {
        announce(t("tokens.copy_failed"), "warn");
      }
    });
    const box = h(
      "div",
      { class: "notice ok once", tabindex: "-1" },
      h("h3", {}, t("tokens.new_title")),
      h("p", { class: "token-line" }, code, " ", copy),
      h("p", { class: "strong" }, t("tokens.shown_once")),
    );
    clear(fresh).append(box);
    box.focus();
    await load();
  });

  section.append(
    h("section", { "aria-labelledby": "new-token-h", class: "card" }, h("h2", { id: "new-token-h" }, t("tokens.create_title")), h("p", {}, t("tokens.intro")), form, fresh),
    h("section", { "aria-labelledby": "tokens-h" }, h("h2", { id: "tokens-h", tabindex: "-1" }, t("tokens.list")), list),
  );
  await load();
}

// ---------------------------------------------------------------------------
// Health

export async function renderHealth(section) {
  const body = h("div", { "aria-live": "polite" });
  const refresh = h("button", { type: "button" }, t("health.refresh"));
  async function load() {
    const health = await api("GET", "health");
    const known = ["server_name", "version", "uptime_s", "database", "users", "rooms", "events", "audit_entries", "active_long_polls"];
    const tiles = known
      .filter((k) => k in health)
      .map((k) => h("div", { class: "tile" }, h("span", { class: "tile-label" }, label(k)), h("span", { class: "tile-value" }, value(health[k], k))));
    const rest = Object.fromEntries(Object.entries(health).filter(([k]) => !known.includes(k)));
    append(clear(body), [
      h("div", { class: "tiles" }, tiles),
      Object.keys(rest).length ? object(rest) : null,
      h("p", { class: "hint" }, t("health.as_of", { time: fmtDate(Date.now()) })),
    ]);
  }
  refresh.addEventListener("click", async () => {
    refresh.disabled = true;
    try {
      await load();
      announce(t("health.refreshed"), "ok");
    } catch (e) {
      announce(errorText(e), "error");
    } finally {
      refresh.disabled = false;
    }
  });
  section.append(h("p", {}, t("health.intro")), body, refresh);
  await load();
}
