//! Every endpoint the server answers, in one table: the router is built
//! from it, and the route fuzzer and docs/api.md are checked against it
//! (tests/tests/route_table.rs), so none of the three can forget a route.

use axum::routing::{delete, get, post, put};
use axum::Router;

use super::*;
use crate::service::Context;

/// One endpoint: its method and its path template (axum's `{param}` syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
}

macro_rules! table {
    ($($method:ident $path:literal => $handler:path;)+) => {
        /// Every endpoint, one entry per method, grouped by area.
        pub const ROUTES: &[Route] = &[
            $(Route { method: table!(@name $method), path: $path },)+
        ];

        /// The router for [`ROUTES`].
        pub(super) fn router() -> Router<Context> {
            Router::new()$(.route($path, $method($handler)))+
        }
    };
    (@name get) => { "GET" };
    (@name put) => { "PUT" };
    (@name post) => { "POST" };
    (@name delete) => { "DELETE" };
}

table! {
    // discovery.rs
    get "/_matrix/client/versions" => discovery::versions;
    get "/.well-known/matrix/client" => discovery::well_known;
    get "/_matrix/client/v3/capabilities" => discovery::capabilities;
    get "/health" => discovery::health;
    // admin.rs
    get "/_cloister/admin/v1/audit/key" => admin::audit_key::<admin::Admin>;
    post "/_cloister/admin/v1/audit/checkpoint" => admin::audit_checkpoint;
    get "/_cloister/admin/v1/audit/export" => admin::audit_export::<admin::Admin>;
    post "/_cloister/admin/v1/users/{user_id}/deactivate" => admin::deactivate_user;
    // admin_subjects.rs
    post "/_cloister/admin/v1/users/{user_id}/erase" => admin_subjects::erase::<admin::Admin>;
    post "/_cloister/admin/v1/users/{user_id}/export" => admin_subjects::export::<admin::Admin>;
    get "/_cloister/admin/v1/report/processing" => admin_subjects::processing::<admin::Admin>;
    // admin_compliance.rs
    get "/_cloister/admin/v1/retention" => admin_compliance::server_retention::<admin::Admin>;
    get "/_cloister/admin/v1/rooms/{room_id}/retention" => admin_compliance::room_retention::<admin::Admin>;
    put "/_cloister/admin/v1/rooms/{room_id}/retention" => admin_compliance::set_room_retention::<admin::Admin>;
    post "/_cloister/admin/v1/purge" => admin_compliance::run_purge::<admin::Admin>;
    get "/_cloister/admin/v1/holds" => admin_compliance::list_holds::<admin::Admin>;
    post "/_cloister/admin/v1/holds" => admin_compliance::set_hold::<admin::Admin>;
    post "/_cloister/admin/v1/holds/{hold_id}/release" => admin_compliance::release_hold::<admin::Admin>;
    // oauth/: Cloister as the OAuth 2.0 authorization server (MSC3861)
    get "/_matrix/client/v1/auth_metadata" => oauth::auth_metadata;
    get "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata" => oauth::auth_metadata;
    get "/_matrix/client/unstable/org.matrix.msc2965/auth_issuer" => oauth::auth_issuer;
    post "/_cloister/oauth2/register" => oauth::register;
    post "/_cloister/oauth2/token" => oauth::token;
    post "/_cloister/oauth2/revoke" => oauth::revoke;
    post "/_cloister/oauth2/device" => oauth::device_authorization;
    get "/_cloister/oauth2/link" => oauth::pages::link_page;
    post "/_cloister/oauth2/link" => oauth::pages::link;
    get "/_cloister/account/" => oauth::pages::account_page;
    get "/_cloister/oauth2/authorize" => oauth::pages::authorize;
    get "/_cloister/oauth2/authorize/{grant_id}" => oauth::pages::grant_page;
    post "/_cloister/oauth2/authorize/{grant_id}" => oauth::pages::grant_action;
    get "/_cloister/oauth2/authorize/{grant_id}/sso/{idp_id}" => oauth::pages::sso_start;
    get "/_cloister/oauth2/authorize/{grant_id}/sso_return" => oauth::pages::sso_return;
    // metrics.rs
    get "/_cloister/metrics" => metrics::metrics;
    // console/: the web console's page, its files and its API (cookie
    // sessions; operator and DPO roles)
    get "/_cloister/console/" => console::assets::index;
    get "/_cloister/console/assets/{*path}" => console::assets::asset;
    post "/_cloister/console/api/session" => console::session::sign_in;
    get "/_cloister/console/api/session" => console::session::current;
    delete "/_cloister/console/api/session" => console::session::sign_out;
    get "/_cloister/console/api/users" => console::operator::users;
    post "/_cloister/console/api/users" => console::operator::create_user;
    get "/_cloister/console/api/users/{user_id}" => console::operator::user;
    post "/_cloister/console/api/users/{user_id}/deactivate" => console::operator::deactivate;
    post "/_cloister/console/api/users/{user_id}/password" => console::operator::reset_password;
    delete "/_cloister/console/api/users/{user_id}/devices/{device_id}" => console::operator::delete_device;
    get "/_cloister/console/api/registration_tokens" => console::operator::tokens;
    post "/_cloister/console/api/registration_tokens" => console::operator::create_token;
    delete "/_cloister/console/api/registration_tokens/{id}" => console::operator::delete_token;
    get "/_cloister/console/api/health" => console::operator::health;
    get "/_cloister/console/api/retention" => console::dpo::retention_overview;
    get "/_cloister/console/api/rooms/{room_id}/retention" => admin_compliance::room_retention::<console::Dpo>;
    put "/_cloister/console/api/rooms/{room_id}/retention" => admin_compliance::set_room_retention::<console::Dpo>;
    post "/_cloister/console/api/purge" => admin_compliance::run_purge::<console::Dpo>;
    get "/_cloister/console/api/holds" => admin_compliance::list_holds::<console::Dpo>;
    post "/_cloister/console/api/holds" => admin_compliance::set_hold::<console::Dpo>;
    post "/_cloister/console/api/holds/{hold_id}/release" => admin_compliance::release_hold::<console::Dpo>;
    get "/_cloister/console/api/users/{user_id}/erasure" => console::dpo::erasure_preview;
    post "/_cloister/console/api/users/{user_id}/erase" => console::dpo::erase;
    post "/_cloister/console/api/users/{user_id}/export" => admin_subjects::export::<console::Dpo>;
    get "/_cloister/console/api/audit/entries" => console::dpo::audit_entries;
    get "/_cloister/console/api/audit/key" => admin::audit_key::<console::Dpo>;
    get "/_cloister/console/api/audit/export" => admin::audit_export::<console::Dpo>;
    get "/_cloister/console/api/processing" => admin_subjects::processing::<console::Dpo>;
    // auth.rs
    post "/_matrix/client/v3/register" => auth::register;
    get "/_matrix/client/v3/register/available" => auth::available;
    get "/_matrix/client/v1/register/m.login.registration_token/validity" => auth::token_validity;
    get "/_matrix/client/v3/login" => auth::login_flows;
    post "/_matrix/client/v3/login" => auth::login;
    // sso.rs
    get "/_matrix/client/v3/login/sso/redirect" => sso::redirect;
    get "/_matrix/client/v3/login/sso/redirect/{idp_id}" => sso::redirect_to;
    get "/_cloister/client/oidc/callback" => sso::oidc_callback;
    post "/_cloister/client/oidc/backchannel_logout" => sso::oidc_backchannel_logout;
    get "/_matrix/client/v3/auth/{auth_type}/fallback/web" => sso::uia_fallback;
    get "/_cloister/client/saml/metadata" => sso::saml_metadata;
    post "/_cloister/client/saml/acs" => sso::saml_acs;
    post "/_matrix/client/v3/logout" => auth::logout;
    post "/_matrix/client/v3/logout/all" => auth::logout_all;
    // account.rs
    get "/_matrix/client/v3/account/whoami" => account::whoami;
    post "/_matrix/client/v3/account/password" => account::change_password;
    post "/_matrix/client/v3/account/deactivate" => account::deactivate;
    // devices.rs
    get "/_matrix/client/v3/devices" => devices::list;
    get "/_matrix/client/v3/devices/{device_id}" => devices::get_one;
    put "/_matrix/client/v3/devices/{device_id}" => devices::update;
    delete "/_matrix/client/v3/devices/{device_id}" => devices::delete_one;
    post "/_matrix/client/v3/delete_devices" => devices::delete_many;
    // rooms.rs
    post "/_matrix/client/v3/createRoom" => rooms::create_room;
    get "/_matrix/client/v3/rooms/{room_id}/state" => rooms::all_state;
    get "/_matrix/client/v3/rooms/{room_id}/state/{event_type}" => rooms::get_state_empty_key;
    put "/_matrix/client/v3/rooms/{room_id}/state/{event_type}" => rooms::put_state_empty_key;
    get "/_matrix/client/v3/rooms/{room_id}/state/{event_type}/" => rooms::get_state_empty_key;
    put "/_matrix/client/v3/rooms/{room_id}/state/{event_type}/" => rooms::put_state_empty_key;
    get "/_matrix/client/v3/rooms/{room_id}/state/{event_type}/{*state_key}" => rooms::get_state;
    put "/_matrix/client/v3/rooms/{room_id}/state/{event_type}/{*state_key}" => rooms::put_state;
    get "/_matrix/client/v3/rooms/{room_id}/members" => rooms::members;
    get "/_matrix/client/v3/rooms/{room_id}/joined_members" => rooms::joined_members;
    get "/_matrix/client/v3/joined_rooms" => rooms::joined_rooms;
    put "/_matrix/client/v3/directory/room/{alias}" => rooms::put_alias;
    get "/_matrix/client/v3/directory/room/{alias}" => rooms::get_alias;
    delete "/_matrix/client/v3/directory/room/{alias}" => rooms::delete_alias;
    get "/_matrix/client/v3/rooms/{room_id}/aliases" => rooms::room_aliases;
    // directory.rs
    post "/_matrix/client/v3/user_directory/search" => directory::search_users;
    get "/_matrix/client/v3/publicRooms" => directory::get_public_rooms;
    post "/_matrix/client/v3/publicRooms" => directory::post_public_rooms;
    get "/_matrix/client/v3/directory/list/room/{room_id}" => directory::get_visibility;
    put "/_matrix/client/v3/directory/list/room/{room_id}" => directory::put_visibility;
    get "/_matrix/client/v1/rooms/{room_id}/hierarchy" => directory::hierarchy;
    // membership.rs
    post "/_matrix/client/v3/join/{room_id_or_alias}" => membership::join;
    post "/_matrix/client/v3/rooms/{room_id}/join" => membership::join;
    post "/_matrix/client/v3/rooms/{room_id}/invite" => membership::invite;
    post "/_matrix/client/v3/rooms/{room_id}/leave" => membership::leave;
    post "/_matrix/client/v3/rooms/{room_id}/forget" => membership::forget;
    post "/_matrix/client/v3/rooms/{room_id}/kick" => membership::kick;
    post "/_matrix/client/v3/rooms/{room_id}/ban" => membership::ban;
    post "/_matrix/client/v3/rooms/{room_id}/unban" => membership::unban;
    // events.rs
    put "/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}" => events::send;
    put "/_matrix/client/v3/rooms/{room_id}/redact/{event_id}/{txn_id}" => events::redact;
    get "/_matrix/client/v3/rooms/{room_id}/messages" => events::messages;
    get "/_matrix/client/v3/rooms/{room_id}/event/{event_id}" => events::event;
    get "/_matrix/client/v3/rooms/{room_id}/context/{event_id}" => events::context;
    // relations.rs
    get "/_matrix/client/v1/rooms/{room_id}/relations/{event_id}" => relations::all;
    get "/_matrix/client/v1/rooms/{room_id}/relations/{event_id}/{rel_type}" => relations::by_rel_type;
    get "/_matrix/client/v1/rooms/{room_id}/relations/{event_id}/{rel_type}/{event_type}" => relations::by_rel_and_event_type;
    get "/_matrix/client/v1/rooms/{room_id}/threads" => relations::threads;
    // sync.rs
    get "/_matrix/client/v3/sync" => sync::sync_handler;
    // sliding_sync.rs
    post "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync" => sliding_sync::sync;
    // keys.rs
    post "/_matrix/client/v3/keys/upload" => keys::upload;
    post "/_matrix/client/v3/keys/query" => keys::query;
    post "/_matrix/client/v3/keys/claim" => keys::claim;
    get "/_matrix/client/v3/keys/changes" => keys::changes;
    post "/_matrix/client/v3/keys/device_signing/upload" => keys::device_signing_upload;
    post "/_matrix/client/v3/keys/signatures/upload" => keys::signatures_upload;
    // to_device.rs
    put "/_matrix/client/v3/sendToDevice/{event_type}/{txn_id}" => to_device::send_to_device;
    // backup.rs
    get "/_matrix/client/v3/room_keys/version" => backup::current_version;
    post "/_matrix/client/v3/room_keys/version" => backup::create_version;
    get "/_matrix/client/v3/room_keys/version/{version}" => backup::get_version;
    put "/_matrix/client/v3/room_keys/version/{version}" => backup::update_version;
    delete "/_matrix/client/v3/room_keys/version/{version}" => backup::delete_version;
    get "/_matrix/client/v3/room_keys/keys" => backup::get_all;
    put "/_matrix/client/v3/room_keys/keys" => backup::put_all;
    delete "/_matrix/client/v3/room_keys/keys" => backup::delete_all;
    get "/_matrix/client/v3/room_keys/keys/{room_id}" => backup::get_room;
    put "/_matrix/client/v3/room_keys/keys/{room_id}" => backup::put_room;
    delete "/_matrix/client/v3/room_keys/keys/{room_id}" => backup::delete_room;
    get "/_matrix/client/v3/room_keys/keys/{room_id}/{session_id}" => backup::get_session;
    put "/_matrix/client/v3/room_keys/keys/{room_id}/{session_id}" => backup::put_session;
    delete "/_matrix/client/v3/room_keys/keys/{room_id}/{session_id}" => backup::delete_session;
    // media.rs
    post "/_matrix/media/v3/upload" => media::upload;
    get "/_matrix/client/v1/media/config" => media::config;
    get "/_matrix/media/v3/config" => media::config;
    get "/_matrix/client/v1/media/download/{server_name}/{media_id}" => media::download;
    get "/_matrix/client/v1/media/download/{server_name}/{media_id}/{file_name}" => media::download_named;
    get "/_matrix/client/v1/media/thumbnail/{server_name}/{media_id}" => media::thumbnail;
    get "/_matrix/media/v3/download/{server_name}/{media_id}" => media::legacy;
    get "/_matrix/media/v3/download/{server_name}/{media_id}/{file_name}" => media::legacy;
    get "/_matrix/media/v3/thumbnail/{server_name}/{media_id}" => media::legacy;
    // profile.rs
    get "/_matrix/client/v3/profile/{user_id}" => profile::get_profile;
    get "/_matrix/client/v3/profile/{user_id}/displayname" => profile::get_displayname;
    put "/_matrix/client/v3/profile/{user_id}/displayname" => profile::put_displayname;
    get "/_matrix/client/v3/profile/{user_id}/avatar_url" => profile::get_avatar_url;
    put "/_matrix/client/v3/profile/{user_id}/avatar_url" => profile::put_avatar_url;
    // account_data.rs
    get "/_matrix/client/v3/user/{user_id}/account_data/{type}" => account_data::get_global;
    put "/_matrix/client/v3/user/{user_id}/account_data/{type}" => account_data::put_global;
    get "/_matrix/client/v3/user/{user_id}/rooms/{room_id}/account_data/{type}" => account_data::get_room;
    put "/_matrix/client/v3/user/{user_id}/rooms/{room_id}/account_data/{type}" => account_data::put_room;
    // pushrules.rs
    get "/_matrix/client/v3/pushrules/" => pushrules::get_all;
    get "/_matrix/client/v3/pushrules" => pushrules::get_all;
    get "/_matrix/client/v3/pushrules/global/" => pushrules::get_global;
    get "/_matrix/client/v3/pushrules/global" => pushrules::get_global;
    get "/_matrix/client/v3/pushrules/global/{kind}/{rule_id}" => pushrules::get_rule;
    put "/_matrix/client/v3/pushrules/global/{kind}/{rule_id}" => pushrules::put_rule;
    delete "/_matrix/client/v3/pushrules/global/{kind}/{rule_id}" => pushrules::delete_rule;
    get "/_matrix/client/v3/pushrules/global/{kind}/{rule_id}/enabled" => pushrules::get_enabled;
    put "/_matrix/client/v3/pushrules/global/{kind}/{rule_id}/enabled" => pushrules::put_enabled;
    get "/_matrix/client/v3/pushrules/global/{kind}/{rule_id}/actions" => pushrules::get_actions;
    put "/_matrix/client/v3/pushrules/global/{kind}/{rule_id}/actions" => pushrules::put_actions;
    // push.rs
    get "/_matrix/client/v3/pushers" => push::get_pushers;
    post "/_matrix/client/v3/pushers/set" => push::set_pusher;
    get "/_matrix/client/v3/notifications" => push::notifications;
    // filters.rs
    post "/_matrix/client/v3/user/{user_id}/filter" => filters::create;
    get "/_matrix/client/v3/user/{user_id}/filter/{filter_id}" => filters::fetch;
    // ephemeral.rs
    put "/_matrix/client/v3/rooms/{room_id}/typing/{user_id}" => ephemeral::typing;
    post "/_matrix/client/v3/rooms/{room_id}/receipt/{receipt_type}/{event_id}" => ephemeral::receipt;
    post "/_matrix/client/v3/rooms/{room_id}/read_markers" => ephemeral::read_markers;
}

#[cfg(test)]
mod tests {
    use super::ROUTES;

    /// The block of `docs/api.md` under "## Every route", one `METHOD path`
    /// per line.
    fn documented() -> Vec<String> {
        let doc = include_str!("../../../docs/api.md");
        let section = doc
            .split("\n## Every route\n")
            .nth(1)
            .expect("docs/api.md has a section \"## Every route\"");
        let block = section
            .split("```")
            .nth(1)
            .expect("the section holds a fenced block");
        block
            .lines()
            .skip(1) // the fence's info string
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn docs_list_every_route_and_no_other() {
        let table: Vec<String> = ROUTES
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert_eq!(
            documented(),
            table,
            "docs/api.md's route list differs from api::routes::ROUTES; the list should read:\n{}",
            table.join("\n")
        );
    }

    #[test]
    fn no_route_is_listed_twice() {
        let mut seen = std::collections::BTreeSet::new();
        for r in ROUTES {
            assert!(seen.insert((r.method, r.path)), "{} {}", r.method, r.path);
        }
    }
}
