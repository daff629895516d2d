//! Cloister as an OAuth 2.0 authorization server (MSC3861) on both
//! backends: discovery, client registration rules, the authorization code
//! grant with PKCE through the sign-in and consent pages, codes used once,
//! refresh tokens rotating with a grace for lost answers, and revocation.

use cloister_tests::oauth::{pkce, query, scope, App, Browser};
use cloister_tests::{both_backends, errcode, Backend, Client, ManualClock, TestServer};
use serde_json::{json, Value};

const MINUTE: i64 = 60_000;

fn error(body: &Value) -> Option<&str> {
    body["error"].as_str()
}

async fn discovery_and_registration(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let anon = Client::anonymous(&url);
    for path in [
        "/_matrix/client/v1/auth_metadata",
        "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata",
    ] {
        let (status, meta) = anon.get(path).await;
        assert_eq!(status, 200, "{meta}");
        let issuer = meta["issuer"].as_str().unwrap();
        assert!(url.starts_with(issuer.trim_end_matches('/')), "{meta}");
        assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(meta["response_types_supported"], json!(["code"]));
        let token = meta["token_endpoint"].as_str().unwrap();
        assert!(token.ends_with("/_cloister/oauth2/token"), "{meta}");
        assert!(meta["registration_endpoint"].is_string());
        assert!(meta["revocation_endpoint"].is_string());
        assert!(meta["device_authorization_endpoint"].is_string());
        let grants = meta["grant_types_supported"].as_array().unwrap();
        assert!(grants.contains(&json!("urn:ietf:params:oauth:grant-type:device_code")));
    }
    let (status, issuer) = anon
        .get("/_matrix/client/unstable/org.matrix.msc2965/auth_issuer")
        .await;
    assert_eq!(status, 200);
    assert!(issuer["issuer"].is_string());

    // What a client may register.
    let web = |redirect: &str| {
        json!({
            "client_uri": "https://app.example.org/",
            "redirect_uris": [redirect],
            "token_endpoint_auth_method": "none",
        })
    };
    let native = |redirect: &str| {
        let mut m = web(redirect);
        m["application_type"] = json!("native");
        m
    };
    for ok in [
        web("https://app.example.org/cb"),
        web("https://login.app.example.org/cb"),
        native("http://127.0.0.1:4711/cb"),
        native("org.example.app:/callback"),
    ] {
        let (status, body) = App::try_register(&url, &ok).await;
        assert_eq!(status, 201, "{ok} → {body}");
        assert!(body["client_id"].is_string());
        assert_eq!(body["redirect_uris"], ok["redirect_uris"]);
    }
    let mut secret = web("https://app.example.org/cb");
    secret["token_endpoint_auth_method"] = json!("client_secret_basic");
    let mut no_uri = web("https://app.example.org/cb");
    no_uri.as_object_mut().unwrap().remove("client_uri");
    for (bad, code) in [
        (web("https://evil.example.net/cb"), "invalid_redirect_uri"),
        (web("http://app.example.org/cb"), "invalid_redirect_uri"),
        (web("http://127.0.0.1:4711/cb"), "invalid_redirect_uri"),
        (native("com.evil.app:/cb"), "invalid_redirect_uri"),
        (secret, "invalid_client_metadata"),
        (no_uri, "invalid_client_metadata"),
        (
            json!({ "client_uri": "http://app.example.org/", "redirect_uris": ["https://app.example.org/cb"] }),
            "invalid_client_metadata",
        ),
        (json!("not an object"), "invalid_client_metadata"),
    ] {
        let (status, body) = App::try_register(&url, &bad).await;
        assert_eq!((status, error(&body)), (400, Some(code)), "{bad} → {body}");
    }
    server.stop().await;

    // The operator's allowlist, and the API switched off.
    let strict = TestServer::start_with(backend, |c| {
        c.oauth.allowed_client_hosts = vec!["example.org".into()];
    })
    .await;
    let (status, _) = App::try_register(&strict.url(), &web("https://app.example.org/cb")).await;
    assert_eq!(status, 201);
    let other =
        json!({ "client_uri": "https://other.test/", "redirect_uris": ["https://other.test/cb"] });
    let (status, body) = App::try_register(&strict.url(), &other).await;
    assert_eq!(
        (status, error(&body)),
        (400, Some("invalid_client_metadata")),
        "{body}"
    );
    strict.stop().await;
    let off = TestServer::start_with(backend, |c| c.oauth.enabled = false).await;
    let (status, body) = Client::anonymous(&off.url())
        .get("/_matrix/client/v1/auth_metadata")
        .await;
    assert_eq!((status, errcode(&body)), (404, Some("M_UNRECOGNIZED")));
    off.stop().await;
}

async fn authorization_code_flow(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let alice = Client::register(&url, "alice", "correct horse").await;
    let app = App::register(&url).await;
    let (verifier, challenge) = pkce();
    let authorize = app.authorize_url(&challenge, &scope("ALICEPHONE1"), "xyz");

    let mut browser = Browser::new();
    let (page_url, page) = browser.open(&authorize).await;
    assert_eq!(page.status, 200, "{page:?}");
    let cookie = browser.cookie.clone().unwrap();
    assert!(cookie.starts_with("__Host-cloister_oauth="), "{cookie}");
    // The cookie flags, from the answer that set it.
    let mut again = Browser::new();
    let first = again.get(&authorize).await;
    let set = first.set_cookie.unwrap();
    for flag in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(flag), "{set}");
    }
    let csp = page.csp.clone().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(page.body.contains("Example App"), "{}", page.body);

    // Another browser (no cookie), or a forged form, gets nowhere.
    let (status, body) = {
        let s = Browser::new().get(&page_url).await;
        (s.status, s.body)
    };
    assert_eq!(status, 403, "{body}");
    let forged = browser
        .post(
            &page_url,
            &[
                ("csrf", "0000"),
                ("action", "sign_in"),
                ("username", "alice"),
                ("password", "correct horse"),
            ],
        )
        .await;
    assert_eq!(forged.status, 403, "{forged:?}");

    // A wrong password: the page again, with the error, and no code.
    let wrong = browser.sign_in(&page_url, &page, "alice", "wrong").await;
    assert_eq!(wrong.status, 401, "{wrong:?}");
    assert!(wrong.body.contains("role=\"alert\""), "{}", wrong.body);

    let consent = browser
        .sign_in(&page_url, &wrong, "alice", "correct horse")
        .await;
    assert_eq!(consent.status, 200, "{consent:?}");
    assert!(
        consent.body.contains("@alice:localhost"),
        "{}",
        consent.body
    );
    assert!(consent.body.contains("app.example.org"), "{}", consent.body);
    let back = browser.decide(&page_url, &consent, true).await;
    assert!(back.starts_with(&app.redirect_uri), "{back}");
    assert_eq!(query(&back, "state").as_deref(), Some("xyz"));
    let code = query(&back, "code").unwrap();

    // Another app (even with the same redirect URI) cannot spend the code,
    // and trying does not spend it for the app it was issued to.
    let other = App::register(&url).await;
    let (status, body) = other.exchange(&code, &verifier).await;
    assert_eq!(
        (status, error(&body)),
        (400, Some("invalid_grant")),
        "{body}"
    );

    // PKCE: the wrong verifier is refused, the right one works, once.
    let (wrong_verifier, _) = pkce();
    let (status, body) = app.exchange(&code, &wrong_verifier).await;
    assert_eq!(
        (status, error(&body)),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, tokens) = app.exchange(&code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["expires_in"].as_u64().unwrap() > 0);
    let phone = alice.with_token(tokens["access_token"].as_str().unwrap());
    let me = phone.whoami().await;
    assert_eq!(me["user_id"], "@alice:localhost", "{me}");
    assert_eq!(me["device_id"], "ALICEPHONE1", "{me}");
    // An OAuth session works on ordinary endpoints.
    let room = phone.create_room(json!({ "name": "from the phone" })).await;
    assert!(room.starts_with('!'));

    // The code again: refused, and the session it opened is ended.
    let (status, body) = app.exchange(&code, &verifier).await;
    assert_eq!(
        (status, error(&body)),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, body) = phone.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(
        (status, errcode(&body)),
        (401, Some("M_UNKNOWN_TOKEN")),
        "{body}"
    );

    // Denied: the app hears access_denied, with its state.
    let (_, challenge) = pkce();
    let mut browser = Browser::new();
    let (page_url, page) = browser
        .open(&app.authorize_url(&challenge, &scope("ALICELAPTOP"), "s2"))
        .await;
    let consent = browser
        .sign_in(&page_url, &page, "alice", "correct horse")
        .await;
    let back = browser.decide(&page_url, &consent, false).await;
    assert_eq!(
        query(&back, "error").as_deref(),
        Some("access_denied"),
        "{back}"
    );
    assert_eq!(query(&back, "state").as_deref(), Some("s2"));
    assert!(query(&back, "code").is_none());
    // And the grant is gone.
    assert_eq!(browser.get(&page_url).await.status, 404);
    server.stop().await;
}

async fn bad_authorization_requests(backend: Backend) {
    let server = TestServer::start(backend).await;
    let app = App::register(&server.url()).await;
    let (_, challenge) = pkce();
    let good = app.authorize_url(&challenge, &scope("DEVICE00001"), "s");

    // An unregistered redirect URI: a page, never a redirect.
    let evil = good.replace(
        "redirect_uri=https%3A%2F%2Fapp.example.org%2Fcallback",
        "redirect_uri=https%3A%2F%2Fevil.example.net%2Fcallback",
    );
    assert_ne!(evil, good);
    let seen = Browser::new().get(&evil).await;
    assert_eq!(
        (seen.status, seen.location.as_deref()),
        (400, None),
        "{seen:?}"
    );
    assert!(seen.body.contains("role=\"alert\""), "a page: {seen:?}");
    // A script rather than a browser gets the Matrix error shape.
    let (status, body) = Client::anonymous(&server.url())
        .get(evil.trim_start_matches(&server.url()))
        .await;
    assert_eq!(
        (status, errcode(&body)),
        (400, Some("M_INVALID_PARAM")),
        "{body}"
    );
    let unknown = good.replace(&app.client_id, "nobody");
    let seen = Browser::new().get(&unknown).await;
    assert_eq!(
        (seen.status, seen.location.as_deref()),
        (400, None),
        "{seen:?}"
    );

    // Everything else goes back to the app, with the state.
    let cases = [
        (
            good.replace("code_challenge_method=S256", "code_challenge_method=plain"),
            "invalid_request",
        ),
        (
            good.replace(&format!("code_challenge={challenge}"), ""),
            "invalid_request",
        ),
        (
            good.replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
        (
            app.authorize_url(&challenge, "urn:matrix:client:device:DEVICE00001", "s"),
            "invalid_scope",
        ),
        (
            app.authorize_url(&challenge, "urn:matrix:client:api:* email", "s"),
            "invalid_scope",
        ),
    ];
    for (url, code) in cases {
        let seen = Browser::new().get(&url).await;
        assert_eq!(seen.status, 303, "{url}: {seen:?}");
        let to = seen.location.unwrap();
        assert!(to.starts_with(&app.redirect_uri), "{to}");
        assert_eq!(query(&to, "error").as_deref(), Some(code), "{url} → {to}");
        assert_eq!(query(&to, "state").as_deref(), Some("s"));
    }
    // The token endpoint's own refusals.
    let (status, body) = app.token(&[("grant_type", "password")]).await;
    assert_eq!(
        (status, error(&body)),
        (400, Some("unsupported_grant_type")),
        "{body}"
    );
    let (status, body) = app.token(&[("grant_type", "authorization_code")]).await;
    assert_eq!(
        (status, error(&body)),
        (400, Some("invalid_request")),
        "{body}"
    );
    let (status, body) = app.exchange("made-up", "x".repeat(43).as_str()).await;
    assert_eq!(
        (status, error(&body)),
        (400, Some("invalid_grant")),
        "{body}"
    );
    server.stop().await;
}

async fn codes_expire_and_refresh_tokens_rotate(backend: Backend) {
    let server =
        TestServer::start_with_clock(backend, ManualClock::new(1_800_000_000_000), |_| {}).await;
    let clock = server.clock().unwrap();
    let url = server.url();
    let bob = Client::register(&url, "bob", "pw-bob-1234").await;
    let app = App::register(&url).await;

    // A code not exchanged within 10 minutes is worthless.
    let (verifier, challenge) = pkce();
    let authorize = app.authorize_url(&challenge, &scope("BOBTABLET01"), "s");
    let back = Browser::new()
        .sign_in_and_allow(&authorize, "bob", "pw-bob-1234")
        .await;
    clock.advance_ms(11 * MINUTE);
    let (status, body) = app
        .exchange(&query(&back, "code").unwrap(), &verifier)
        .await;
    assert_eq!(
        (status, error(&body)),
        (400, Some("invalid_grant")),
        "{body}"
    );

    let tokens = app.sign_in("bob", "pw-bob-1234", "BOBPHONE001").await;
    let first_access = tokens["access_token"].as_str().unwrap().to_owned();
    let first_refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (status, next) = app.refresh(&first_refresh).await;
    assert_eq!(status, 200, "{next}");
    let second_access = next["access_token"].as_str().unwrap().to_owned();
    let second_refresh = next["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second_refresh, first_refresh);
    assert_ne!(second_access, first_access);
    assert_eq!(
        bob.with_token(&second_access).whoami().await["device_id"],
        "BOBPHONE001"
    );

    // Access tokens expire (5 minutes by default): soft logout, so the
    // client refreshes instead of signing out.
    clock.advance_ms(6 * MINUTE);
    let (status, body) = bob
        .with_token(&first_access)
        .get("/_matrix/client/v3/account/whoami")
        .await;
    assert_eq!(
        (status, errcode(&body)),
        (401, Some("M_UNKNOWN_TOKEN")),
        "{body}"
    );
    assert_eq!(body["soft_logout"], true, "{body}");

    // The answer to a refresh was lost: the old token works once more
    // within the grace (60 s)...
    let (status, third) = app.refresh(&second_refresh).await;
    assert_eq!(status, 200, "{third}");
    let (status, retried) = app.refresh(&second_refresh).await;
    assert_eq!(status, 200, "retry within the grace: {retried}");
    let fourth_refresh = retried["refresh_token"].as_str().unwrap().to_owned();
    let live = retried["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        bob.with_token(&live).whoami().await["user_id"],
        "@bob:localhost"
    );
    // Two rotations back, a token is simply unknown.
    let (status, body) = app.refresh(&first_refresh).await;
    assert_eq!(
        (status, error(&body)),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert_eq!(
        bob.with_token(&live).whoami().await["user_id"],
        "@bob:localhost"
    );
    // A rotated token presented after the grace is a stolen one: the
    // session ends, for whoever holds it.
    clock.advance_ms(2 * MINUTE);
    let (status, body) = app.refresh(&second_refresh).await;
    assert_eq!(
        (status, error(&body)),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, _) = bob
        .with_token(&live)
        .get("/_matrix/client/v3/account/whoami")
        .await;
    assert_eq!(status, 401);
    let (status, body) = app.refresh(&fourth_refresh).await;
    assert_eq!(
        (status, error(&body)),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let devices = bob.get("/_matrix/client/v3/devices").await.1;
    let ids: Vec<&str> = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["device_id"].as_str())
        .collect();
    assert!(!ids.contains(&"BOBPHONE001"), "{devices}");
    server.stop().await;
}

async fn revocation(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let carol = Client::register(&url, "carol", "pw-carol-123").await;
    let app = App::register(&url).await;
    let other = App::register(&url).await;

    // Revoking the access token ends the whole session.
    let tokens = app.sign_in("carol", "pw-carol-123", "CAROLPHONE1").await;
    // Another app cannot refresh with this app's refresh token.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, body) = other.refresh(refresh).await;
    assert_eq!(
        (status, error(&body)),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let access = tokens["access_token"].as_str().unwrap();
    let (status, body) = other.revoke(access).await;
    assert_eq!(
        (status, error(&body)),
        (401, Some("invalid_client")),
        "{body}"
    );
    assert_eq!(
        carol.with_token(access).whoami().await["device_id"],
        "CAROLPHONE1"
    );
    let (status, _) = app.revoke(access).await;
    assert_eq!(status, 200);
    let (status, _) = carol
        .with_token(access)
        .get("/_matrix/client/v3/account/whoami")
        .await;
    assert_eq!(status, 401);
    let (status, body) = app.refresh(tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (status, error(&body)),
        (400, Some("invalid_grant")),
        "{body}"
    );

    // So does revoking the refresh token; unknown tokens are no error.
    let tokens = app.sign_in("carol", "pw-carol-123", "CAROLPHONE2").await;
    let (status, _) = app.revoke(tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    let (status, _) = carol
        .with_token(tokens["access_token"].as_str().unwrap())
        .get("/_matrix/client/v3/account/whoami")
        .await;
    assert_eq!(status, 401);
    assert_eq!(app.revoke("never-issued").await.0, 200);

    // Deleting the device from another session ends the OAuth one too.
    let tokens = app.sign_in("carol", "pw-carol-123", "CAROLPHONE3").await;
    let (status, body) = carol
        .post(
            "/_matrix/client/v3/delete_devices",
            json!({ "devices": ["CAROLPHONE3"], "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "carol" }, "password": "pw-carol-123" } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.refresh(tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (status, error(&body)),
        (400, Some("invalid_grant")),
        "{body}"
    );
    server.stop().await;
}

both_backends!(
    discovery_and_registration, discovery_and_registration;
    authorization_code_flow, authorization_code_flow;
    bad_authorization_requests, bad_authorization_requests;
    codes_expire_and_refresh_tokens_rotate, codes_expire_and_refresh_tokens_rotate;
    revocation, revocation;
);
