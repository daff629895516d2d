//! Element X's sign-in for a directory account: the OAuth 2.0 sign-in page
//! checks the password at a real OpenLDAP `slapd`, as `/login` does (the
//! first sign-in creates the account), on both backends.

use cloister_tests::ldap::TestDirectory;
use cloister_tests::oauth::{pkce, query, scope, App, Browser};
use cloister_tests::{both_backends, Backend, Client, TestServer};

async fn directory_accounts_sign_in_on_the_oauth_page(backend: Backend) {
    let directory = TestDirectory::start().await;
    let server = TestServer::start_with(backend, |c| directory.configure(c)).await;
    let url = server.url();
    let app = App::register(&url).await;
    let (verifier, challenge) = pkce();
    let mut browser = Browser::new();
    let (page_url, page) = browser
        .open(&app.authorize_url(&challenge, &scope("ALICELDAP01"), "s"))
        .await;
    // The directory says no: the page says so, and nothing is created.
    let refused = browser
        .sign_in(&page_url, &page, "alice", "not-her-secret")
        .await;
    assert_eq!(refused.status, 401, "{refused:?}");
    let consent = browser
        .sign_in(&page_url, &refused, "alice", "alice-secret")
        .await;
    assert_eq!(consent.status, 200, "{consent:?}");
    assert!(
        consent.body.contains("@alice:localhost"),
        "{}",
        consent.body
    );
    let back = browser.decide(&page_url, &consent, true).await;
    let (status, tokens) = app
        .exchange(&query(&back, "code").unwrap(), &verifier)
        .await;
    assert_eq!(status, 200, "{tokens}");
    let phone = Client::anonymous(&url).with_token(tokens["access_token"].as_str().unwrap());
    let me = phone.whoami().await;
    assert_eq!(me["user_id"], "@alice:localhost", "{me}");
    assert_eq!(me["device_id"], "ALICELDAP01", "{me}");
    server.stop().await;
}

both_backends!(
    directory_accounts_sign_in_on_the_oauth_page,
    directory_accounts_sign_in_on_the_oauth_page
);
