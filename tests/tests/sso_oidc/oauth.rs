//! Element X's way in for an institution that signs in only through its
//! OpenID Connect provider: Cloister's OAuth 2.0 sign-in page hands the
//! sign-in on to the provider and back, the app gets its tokens, and the
//! provider's back-channel logout ends the app's session (its refresh
//! token too, so it cannot refresh its way past the logout).

use cloister_server::config::PasswordLoginMode;
use cloister_tests::browser::Browser as ProviderBrowser;
use cloister_tests::oauth::{pkce, query, scope, App, Browser};
use cloister_tests::{errcode, Backend, Client};
use serde_json::json;

use super::start;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_sign_in_hands_off_to_the_provider() {
    // No allow-list: the OAuth pages are the server's own.
    let sso = start(Backend::Sqlite, None, |c| {
        c.sso.client_allowlist.clear();
        c.sso.password_login = PasswordLoginMode::Off;
    })
    .await;
    let url = sso.server.url();
    let app = App::register(&url).await;
    let (verifier, challenge) = pkce();
    let mut browser = Browser::new();
    let authorize = app.authorize_url(&challenge, &scope("ERIKPHONE01"), "st");
    let (page_url, page) = browser.open(&authorize).await;
    assert_eq!(page.status, 200, "{page:?}");
    // Password login is off: only the provider is offered.
    assert!(!page.body.contains("name=\"password\""), "{}", page.body);
    let href = page.provider_link("keycloak").expect("a provider link");

    sso.op
        .sign_in_as("sub-erik", json!({"preferred_username": "erik"}))
        .await;
    let to_provider = browser.get(&format!("{url}{href}")).await;
    assert_eq!(to_provider.status, 303, "{to_provider:?}");
    let grant_page = page_url.split('?').next().unwrap();
    let sso_return = format!("{grant_page}/sso_return");
    let provider = ProviderBrowser::new()
        .follow(&to_provider.location.unwrap(), &sso_return)
        .await;
    assert!(provider.stopped(), "{provider:?}\n{}", sso.op.log());
    // Back in the browser that began it: on to consent.
    let back = browser.get(&provider.url).await;
    assert_eq!(back.status, 303, "{back:?}");
    let consent = browser.get(&back.location.unwrap()).await;
    let erik = sso.server.user_id("erik");
    assert!(consent.body.contains(&erik), "{}", consent.body);
    // The login token was spent: another browser cannot use it.
    let stolen = Browser::new().get(&provider.url).await;
    assert_eq!(stolen.status, 403, "{stolen:?}");

    let to_app = browser.decide(&page_url, &consent, true).await;
    let code = query(&to_app, "code").expect("a code");
    let (status, tokens) = app.exchange(&code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let phone = Client::anonymous(&url).with_token(tokens["access_token"].as_str().unwrap());
    let me = phone.whoami().await;
    assert_eq!(
        (me["user_id"].as_str(), me["device_id"].as_str()),
        (Some(erik.as_str()), Some("ERIKPHONE01")),
        "{me}"
    );

    // The provider ends erik's session: the app is signed out softly and
    // cannot refresh; it must sign in again (at the provider).
    let answer = sso.op.backchannel_logout("sub-erik").await;
    assert_eq!(answer["sent"], 1, "{answer}");
    let (status, body) = phone.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(
        (status, errcode(&body)),
        (401, Some("M_UNKNOWN_TOKEN")),
        "{body}"
    );
    assert_eq!(body["soft_logout"], true, "{body}");
    let (status, body) = app.refresh(tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    sso.server.stop().await;
}
