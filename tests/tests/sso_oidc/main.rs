//! OpenID Connect single sign-on against a real provider (`oidc-provider`
//! under Node, tests/src/oidc.rs), driven the way a browser and an app do
//! it: the SSO redirect, the provider, the callback, `m.login.token`.
//! `accounts.rs` has what every provider shares: confirming sensitive
//! actions at the provider, the password-login switch, operator links;
//! `console.rs` the web console's sign-in through the provider.

mod accounts;
mod console;
mod oauth;

use std::net::{Ipv4Addr, SocketAddr};

use cloister_server::clock::{Clock, ManualClock, SystemClock};
use cloister_server::config::{Config, Lifetime, Oidc};
use cloister_tests::browser::{Browser, Page};
use cloister_tests::oidc::{self, OidcProvider};
use cloister_tests::{encode, errcode, free_port, Backend, Client, ServerProcess, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

/// The app's `redirectUrl`; on `sso.client_allowlist`.
const APP: &str = "http://app.example/after-login";

struct Sso {
    server: TestServer,
    op: OidcProvider,
}

fn provider(op: &OidcProvider) -> Oidc {
    Oidc {
        id: "keycloak".into(),
        name: "Staff login".into(),
        issuer: op.issuer(),
        client_id: oidc::CLIENT_ID.into(),
        client_secret: oidc::CLIENT_SECRET.into(),
        mail_claim: "email".into(),
        ..Oidc::default()
    }
}

/// A provider whose client points at a server on a port chosen first, and
/// that server.
async fn start(
    backend: Backend,
    clock: Option<ManualClock>,
    tweak: impl FnOnce(&mut Config),
) -> Sso {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let op = OidcProvider::start(
        &format!("{base}/_cloister/client/oidc/callback"),
        &format!("{base}/_cloister/client/oidc/backchannel_logout"),
    )
    .await;
    let configure = |c: &mut Config| {
        c.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        c.public_baseurl = format!("{base}/");
        c.oidc = vec![provider(&op)];
        c.sso.client_allowlist = vec!["http://app.example/".into()];
        tweak(c);
    };
    let server = match clock {
        Some(clock) => TestServer::start_with_clock(backend, clock, configure).await,
        None => TestServer::start_with(backend, configure).await,
    };
    Sso { server, op }
}

impl Sso {
    fn redirect_url(&self, server_url: &str) -> String {
        format!(
            "{server_url}/_matrix/client/v3/login/sso/redirect/keycloak?redirectUrl={}",
            encode(APP)
        )
    }

    /// Signs `sub` in at the provider in a fresh browser; the page where
    /// the flow ended (stopped at the app when it worked).
    async fn browse(&self, sub: &str, username: &str) -> Page {
        self.op
            .sign_in_as(
                sub,
                json!({"preferred_username": username, "name": format!("{username} (staff)"), "email": format!("{username}@example.org")}),
            )
            .await;
        Browser::new()
            .follow(
                &self.redirect_url(&self.server.url()),
                "http://app.example/",
            )
            .await
    }

    /// The whole flow to a session; panics with the page when refused.
    async fn login(&self, sub: &str, username: &str, device_id: Option<&str>) -> Client {
        let page = self.browse(sub, username).await;
        assert!(
            page.stopped(),
            "the sign-in did not come back to the app: {page:?}\n{}",
            self.op.log()
        );
        let token = page.query("loginToken").expect("a loginToken for the app");
        let (status, body) = token_login(&self.server.url(), &token, device_id).await;
        assert_eq!(status, 200, "{body}");
        let mut client = Client::anonymous(&self.server.url())
            .with_token(body["access_token"].as_str().unwrap());
        client.user_id = body["user_id"].as_str().unwrap().to_owned();
        client.device_id = body["device_id"].as_str().unwrap().to_owned();
        client
    }
}

async fn token_login(server_url: &str, token: &str, device_id: Option<&str>) -> (u16, Value) {
    let mut body = json!({"type": "m.login.token", "token": token});
    if let Some(device_id) = device_id {
        body["device_id"] = json!(device_id);
    }
    Client::anonymous(server_url)
        .post("/_matrix/client/v3/login", body)
        .await
}

/// A refused sign-in: a page for the person, no login for the app, and an
/// audit entry naming the reason.
async fn assert_refused(sso: &Sso, page: &Page, status: u16, says: &str, reason: &str) {
    assert!(!page.stopped(), "the app got a login: {page:?}");
    assert_eq!(page.status, status, "{}", page.body);
    assert!(
        page.body.contains(says),
        "the page should say {says:?}: {}",
        page.body
    );
    assert!(
        page.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'"),
        "failure pages carry a strict CSP"
    );
    assert!(
        sso.server.audit_count(&format!("%\"{reason}\"%")).await >= 1,
        "the refusal is audited as {reason}"
    );
}

#[tokio::test]
async fn a_provider_signs_people_in_and_links_them_on_issuer_and_subject() {
    for backend in Backend::ALL {
        let sso = start(backend, None, |_| {}).await;
        let (_, flows) = Client::anonymous(&sso.server.url())
            .get("/_matrix/client/v3/login")
            .await;
        let flows = flows["flows"].as_array().unwrap();
        let sso_flow = flows
            .iter()
            .find(|f| f["type"] == "m.login.sso")
            .expect("m.login.sso");
        assert_eq!(
            sso_flow["identity_providers"],
            json!([{"id": "keycloak", "name": "Staff login"}])
        );
        assert!(flows.iter().any(|f| f["type"] == "m.login.token"));

        let page = sso.browse("f3a9-alice", "Alice").await;
        assert!(page.stopped(), "{page:?}");
        assert!(
            page.url.starts_with(&format!("{APP}?loginToken=")),
            "{}",
            page.url
        );
        let token = page.query("loginToken").unwrap();
        let (status, body) = token_login(&sso.server.url(), &token, Some("LAPTOP")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["user_id"], sso.server.user_id("alice"));
        assert_eq!(body["device_id"], "LAPTOP");
        let alice =
            Client::anonymous(&sso.server.url()).with_token(body["access_token"].as_str().unwrap());
        assert_eq!(alice.whoami().await["user_id"], sso.server.user_id("alice"));
        let (_, profile) = alice
            .get(&format!(
                "/_matrix/client/v3/profile/{}",
                encode(&sso.server.user_id("alice"))
            ))
            .await;
        assert_eq!(profile["displayname"], "Alice (staff)");

        // The token is spent.
        let (status, body) = token_login(&sso.server.url(), &token, None).await;
        assert_eq!(
            (status, errcode(&body)),
            (403, Some("M_FORBIDDEN")),
            "{body}"
        );

        // Renamed at the provider: the same account, by the link.
        let again = sso.login("f3a9-alice", "alice.liddell", None).await;
        assert_eq!(again.whoami().await["user_id"], sso.server.user_id("alice"));
        assert_eq!(
            sso.server
                .count(
                    "SELECT COUNT(*) FROM identity_links WHERE user_id = $1",
                    &sso.server.user_id("alice")
                )
                .await,
            1
        );
        assert_eq!(
            sso.server
                .audit_count("%\"account_created\"%\"sso\"%")
                .await,
            1
        );
        let metrics = sso.server.metrics().await;
        assert!(
            metrics.contains("\ncloister_sso_logins_total 2\n"),
            "{metrics}"
        );

        // No password: the account cannot sign in with one.
        let (status, _) = Client::anonymous(&sso.server.url())
            .post(
                "/_matrix/client/v3/login",
                json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": ""}),
            )
            .await;
        assert_eq!(status, 403);
        sso.server.stop().await;
    }
}

#[tokio::test]
async fn refused_sign_ins_show_a_page_and_are_audited() {
    let clock = ManualClock::new(SystemClock.now_ms());
    let sso = start(Backend::Sqlite, Some(clock.clone()), |c| {
        c.oidc[0].leeway = Lifetime::Millis(0);
    })
    .await;

    // The provider answers with a correctly signed ID token for another nonce.
    sso.op.override_nonce(Some("not-the-one-we-sent")).await;
    let page = sso.browse("sub-bob", "bob").await;
    assert_refused(&sso, &page, 403, "could not be verified", "sso_wrong_nonce").await;
    sso.op.override_nonce(None).await;

    // Expired: the ID token lives 60 s; the server's clock is 10 minutes on.
    sso.op.set_id_token_ttl(60).await;
    clock.advance_ms(10 * 60 * 1000);
    let page = sso.browse("sub-bob", "bob").await;
    assert_refused(&sso, &page, 403, "could not be verified", "sso_expired").await;
    clock.advance_ms(-10 * 60 * 1000);
    sso.op.set_id_token_ttl(3600).await;

    // Unsolicited: a callback for a sign-in this server never began.
    let page = Browser::new()
        .get(&format!(
            "{}/_cloister/client/oidc/callback?code=abc&state=forged",
            sso.server.url()
        ))
        .await;
    assert_refused(
        &sso,
        &page,
        400,
        "expired or was already completed",
        "sso_unsolicited",
    )
    .await;

    // Replayed: the provider's answer, presented twice.
    sso.op
        .sign_in_as("sub-carol", json!({"preferred_username": "carol"}))
        .await;
    let browser = Browser::new();
    let callback = format!("{}/_cloister/client/oidc/callback", sso.server.url());
    let at_callback = browser
        .follow(&sso.redirect_url(&sso.server.url()), &callback)
        .await;
    assert!(at_callback.stopped(), "{at_callback:?}");
    let first = browser
        .follow(&at_callback.url, "http://app.example/")
        .await;
    assert!(first.stopped(), "the first use works: {first:?}");
    let second = browser.get(&at_callback.url).await;
    assert_refused(
        &sso,
        &second,
        400,
        "expired or was already completed",
        "sso_unsolicited",
    )
    .await;

    // A local account of the same name is never taken over.
    Client::register(&sso.server.url(), "dave", "dave-password-1").await;
    let page = sso.browse("sub-dave-at-idp", "Dave").await;
    assert_refused(
        &sso,
        &page,
        403,
        "already exists and is not linked",
        "sso_account_conflict",
    )
    .await;

    // A deactivated account does not come back through the provider.
    let erin = sso.login("sub-erin", "erin", None).await;
    let admin = sso.server.register_admin("admin").await;
    let (status, body) = admin
        .post(
            &format!(
                "/_cloister/admin/v1/users/{}/deactivate",
                encode(&sso.server.user_id("erin"))
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(erin.get("/_matrix/client/v3/account/whoami").await.0, 401);
    assert_eq!(
        sso.server
            .count(
                "SELECT COUNT(*) FROM identity_links WHERE user_id = $1",
                &sso.server.user_id("erin")
            )
            .await,
        0,
        "deactivation removes the identity links"
    );
    let page = sso.browse("sub-erin", "erin").await;
    assert_refused(&sso, &page, 403, "deactivated", "sso_deactivated").await;

    // Redirects to somewhere that is not a web address are refused upfront.
    let page = Browser::new()
        .get(&format!(
            "{}/_matrix/client/v3/login/sso/redirect/keycloak?redirectUrl={}",
            sso.server.url(),
            encode("javascript:alert(1)")
        ))
        .await;
    assert_refused(&sso, &page, 400, "not a web address", "sso_bad_redirect").await;
    // Seven refusals above, each counted for the operator's dashboards.
    let metrics = sso.server.metrics().await;
    let refusals: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cloister_sso_refusals_total "))
        .and_then(|v| v.parse().ok())
        .expect("cloister_sso_refusals_total");
    assert!(refusals >= 7, "{metrics}");
    sso.server.stop().await;
}

#[tokio::test]
async fn apps_not_on_the_allowlist_get_a_confirmation_page() {
    let sso = start(Backend::Sqlite, None, |c| c.sso.client_allowlist.clear()).await;
    sso.op
        .sign_in_as("sub-frank", json!({"preferred_username": "frank"}))
        .await;
    let page = Browser::new()
        .follow(&sso.redirect_url(&sso.server.url()), "http://app.example/")
        .await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("app.example"), "{}", page.body);
    assert!(
        page.body.contains(&sso.server.user_id("frank")),
        "{}",
        page.body
    );
    let link = page
        .body
        .split("href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a continue link")
        .replace("&amp;", "&");
    assert!(link.starts_with(&format!("{APP}?loginToken=")), "{link}");
    sso.server.stop().await;
}

#[tokio::test]
async fn rotated_provider_keys_are_fetched_again() {
    let sso = start(Backend::Sqlite, None, |_| {}).await;
    sso.login("sub-gina", "gina", None).await;
    let kid = sso.op.rotate_keys().await;
    assert!(!kid.is_empty());
    // The cached keys no longer include the signing key: fetched again once.
    let gina = sso.login("sub-gina", "gina", None).await;
    assert_eq!(gina.whoami().await["user_id"], sso.server.user_id("gina"));
    sso.server.stop().await;
}

#[tokio::test]
async fn back_channel_logout_is_a_soft_logout_that_keeps_the_device() {
    let sso = start(Backend::Sqlite, None, |_| {}).await;
    let phone = sso.login("sub-hana", "hana", Some("PHONE")).await;
    let keys = phone.device_keys();
    phone.upload_keys(&keys, 5).await;
    let other = sso.login("sub-ivan", "ivan", Some("IVANS")).await;

    let answer = sso.op.backchannel_logout("sub-hana").await;
    assert_eq!(answer["sent"], 1, "{answer}");
    assert_eq!(answer["statuses"], json!([200]), "{answer}");

    let (status, body) = phone.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(
        (status, errcode(&body)),
        (401, Some("M_UNKNOWN_TOKEN")),
        "{body}"
    );
    assert_eq!(body["soft_logout"], true, "{body}");
    // Someone else's session is untouched.
    assert_eq!(other.whoami().await["user_id"], sso.server.user_id("ivan"));
    // The device and its keys stay.
    let (_, found) = other
        .post(
            "/_matrix/client/v3/keys/query",
            json!({"device_keys": {sso.server.user_id("hana"): []}}),
        )
        .await;
    assert!(
        found["device_keys"][sso.server.user_id("hana")]["PHONE"].is_object(),
        "{found}"
    );
    assert_eq!(sso.server.audit_count("%sso_soft_logout%").await, 1);
    let metrics = sso.server.metrics().await;
    assert!(
        metrics.contains("\ncloister_sso_soft_logouts_total 1\n"),
        "{metrics}"
    );

    // Signing in again on the same device continues it.
    let back = sso.login("sub-hana", "hana", Some("PHONE")).await;
    assert_eq!(back.whoami().await["device_id"], "PHONE");
    let (_, found) = other
        .post(
            "/_matrix/client/v3/keys/query",
            json!({"device_keys": {sso.server.user_id("hana"): ["PHONE"]}}),
        )
        .await;
    assert!(found["device_keys"][sso.server.user_id("hana")]["PHONE"].is_object());

    // A logout token the provider did not sign changes nothing.
    let forged = format!(
        "{}.{}.c2lnbmF0dXJl",
        base64_url(&json!({"alg": "RS256", "kid": "made-up"})),
        base64_url(
            &json!({"iss": sso.op.issuer(), "aud": oidc::CLIENT_ID, "sub": "sub-ivan",
            "iat": 1, "jti": "x", "events": {"http://schemas.openid.net/event/backchannel-logout": {}}})
        )
    );
    let response = reqwest::Client::new()
        .post(format!(
            "{}/_cloister/client/oidc/backchannel_logout",
            sso.server.url()
        ))
        .form(&[("logout_token", forged.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(other.whoami().await["user_id"], sso.server.user_id("ivan"));
    let (status, _) = other
        .request(
            Method::GET,
            "/_matrix/client/v3/account/whoami",
            Value::Null,
        )
        .await;
    assert_eq!(status, 200);
    sso.server.stop().await;
}

fn base64_url(value: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test]
async fn a_sign_in_begun_on_one_node_finishes_on_another() {
    let sso = start(Backend::Postgres, None, |_| {}).await;
    // A second `cloister serve` process on the same database, configured
    // from the environment as an operator would, behind the same public URL.
    let env = [
        ("CLOISTER_PUBLIC_BASEURL", format!("{}/", sso.server.url())),
        ("CLOISTER_OIDC__0__ID", "keycloak".into()),
        ("CLOISTER_OIDC__0__ISSUER", sso.op.issuer()),
        ("CLOISTER_OIDC__0__CLIENT_ID", oidc::CLIENT_ID.into()),
        (
            "CLOISTER_OIDC__0__CLIENT_SECRET",
            oidc::CLIENT_SECRET.into(),
        ),
        (
            "CLOISTER_SSO__CLIENT_ALLOWLIST",
            "[\"http://app.example/\"]".into(),
        ),
    ];
    let env = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let mut peer = ServerProcess::start_peer_with_env(&sso.server, env).await;
    sso.op
        .sign_in_as("sub-jo", json!({"preferred_username": "jo"}))
        .await;
    let browser = Browser::new();
    let callback = format!("{}/_cloister/client/oidc/callback", sso.server.url());
    let at_callback = browser
        .follow(&sso.redirect_url(&sso.server.url()), &callback)
        .await;
    assert!(at_callback.stopped(), "{at_callback:?}");
    // The load balancer sends the provider's answer to the other node.
    let on_peer = at_callback.url.replacen(&sso.server.url(), &peer.url(), 1);
    let page = browser.follow(&on_peer, "http://app.example/").await;
    assert!(page.stopped(), "{page:?}\n{}", peer.log());
    let token = page.query("loginToken").unwrap();
    // And the app trades the token at the first node again.
    let (status, body) = token_login(&sso.server.url(), &token, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], sso.server.user_id("jo"));
    peer.kill().await;
    sso.server.stop().await;
}
