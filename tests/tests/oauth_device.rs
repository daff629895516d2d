//! The OAuth 2.0 device authorization grant (RFC 8628) on both backends:
//! an app without a browser shows a code, the person enters it on
//! Cloister's page, signs in and allows it, and the app's polls get
//! `authorization_pending`, `slow_down`, then the tokens once; expiry and
//! denial.

use cloister_tests::oauth::{scope, App, Browser};
use cloister_tests::{both_backends, Backend, Client, ManualClock, TestServer};
use serde_json::Value;

fn error(body: &Value) -> Option<&str> {
    body["error"].as_str()
}

fn field<'a>(body: &'a Value, name: &str) -> &'a str {
    body[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} in {body}"))
}

async fn device_grant(backend: Backend) {
    let server =
        TestServer::start_with_clock(backend, ManualClock::new(1_800_000_000_000), |_| {}).await;
    let clock = server.clock().unwrap();
    let url = server.url();
    let dana = Client::register(&url, "dana", "pw-dana-1234").await;
    let tv = App::register_device_app(&url).await;

    // Only apps that registered the grant type may use it.
    let web = App::register(&url).await;
    let (status, body) = web.device_authorization(&scope("DANATV0001")).await;
    assert_eq!(
        (status, error(&body)),
        (400, Some("unauthorized_client")),
        "{body}"
    );
    let (status, body) = tv
        .device_authorization("urn:matrix:client:device:DANATV0001")
        .await;
    assert_eq!(
        (status, error(&body)),
        (400, Some("invalid_scope")),
        "{body}"
    );

    let (status, auth) = tv.device_authorization(&scope("DANATV0001")).await;
    assert_eq!(status, 200, "{auth}");
    let device_code = field(&auth, "device_code").to_owned();
    let user_code = field(&auth, "user_code").to_owned();
    assert_eq!(user_code.len(), 9, "XXXX-XXXX: {auth}");
    assert!(field(&auth, "verification_uri").ends_with("/_cloister/oauth2/link"));
    assert!(field(&auth, "verification_uri_complete").contains(&user_code));
    assert_eq!(auth["interval"], 5);

    // Nobody has decided yet; polling faster than the interval is told so.
    let (status, body) = tv.poll(&device_code).await;
    assert_eq!(
        (status, error(&body)),
        (400, Some("authorization_pending")),
        "{body}"
    );
    let (status, body) = tv.poll(&device_code).await;
    assert_eq!((status, error(&body)), (400, Some("slow_down")), "{body}");

    // A wrong code leads nowhere; the right one, typed loosely, to sign-in.
    let mut browser = Browser::new();
    let (_, wrong) = browser.link(&url, "BCDF-BCDF").await;
    assert_eq!(wrong.status, 404, "{wrong:?}");
    let typed = user_code.to_lowercase().replace('-', " ");
    let (page_url, page) = browser.link(&url, &typed).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("Example TV"), "{}", page.body);
    let consent = browser
        .sign_in(&page_url, &page, "dana", "pw-dana-1234")
        .await;
    assert_eq!(consent.status, 200, "{consent:?}");
    let done = browser.decide_device(&page_url, &consent, true).await;
    assert_eq!(done.status, 200, "{done:?}");
    assert!(done.body.contains("role=\"status\""), "{}", done.body);

    // The next poll gets the tokens, once.
    clock.advance_ms(5_000);
    let (status, tokens) = tv.poll(&device_code).await;
    assert_eq!(status, 200, "{tokens}");
    let me = dana
        .with_token(field(&tokens, "access_token"))
        .whoami()
        .await;
    assert_eq!(me["device_id"], "DANATV0001", "{me}");
    clock.advance_ms(5_000);
    let (status, body) = tv.poll(&device_code).await;
    assert_eq!(
        (status, error(&body)),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, _) = tv.refresh(field(&tokens, "refresh_token")).await;
    assert_eq!(status, 200);
    // The code cannot be entered again.
    let (_, again) = Browser::new().link(&url, &user_code).await;
    assert_eq!(again.status, 404, "{again:?}");

    // Denied.
    let (_, auth) = tv.device_authorization(&scope("DANATV0002")).await;
    let mut browser = Browser::new();
    let (page_url, page) = browser.link(&url, field(&auth, "user_code")).await;
    let consent = browser
        .sign_in(&page_url, &page, "dana", "pw-dana-1234")
        .await;
    browser.decide_device(&page_url, &consent, false).await;
    let (status, body) = tv.poll(field(&auth, "device_code")).await;
    assert_eq!(
        (status, error(&body)),
        (400, Some("access_denied")),
        "{body}"
    );

    // Expired: ten minutes without a decision.
    let (_, auth) = tv.device_authorization(&scope("DANATV0003")).await;
    clock.advance_ms(11 * 60_000);
    let (status, body) = tv.poll(field(&auth, "device_code")).await;
    assert_eq!(
        (status, error(&body)),
        (400, Some("expired_token")),
        "{body}"
    );
    let (_, late) = Browser::new().link(&url, field(&auth, "user_code")).await;
    assert_eq!(late.status, 404, "{late:?}");
    server.stop().await;
}

both_backends!(device_grant, device_grant);
