//! The web console's single sign-on: the console sends the browser to the
//! provider with itself as the redirect, and turns the login token it gets
//! back into a console session — only for accounts with a console role.

use cloister_server::service::staff::{self, Role};
use cloister_tests::browser::Browser;
use cloister_tests::console::Console;
use cloister_tests::{encode, Backend};
use serde_json::json;

use super::start;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_signs_staff_in_through_the_provider() {
    // No allow-list at all: the console is the server's own page, so the
    // provider's answer comes straight back to it, with no confirmation.
    let sso = start(Backend::Sqlite, None, |c| c.sso.client_allowlist.clear()).await;
    let url = sso.server.url();
    let console = format!("{url}/_cloister/console/");
    let sign_in = format!(
        "{url}/_matrix/client/v3/login/sso/redirect/keycloak?redirectUrl={}",
        encode(&console)
    );
    let token = || async {
        sso.op
            .sign_in_as("sub-dora", json!({"preferred_username": "dora"}))
            .await;
        let page = Browser::new().follow(&sign_in, &console).await;
        assert!(page.stopped(), "did not come back to the console: {page:?}");
        page.query("loginToken")
            .expect("a login token for the console")
    };

    // The first sign-in makes the account, which has no role yet.
    let first = token().await;
    let refused = Console::try_sign_in_with(&url, json!({ "login_token": first })).await;
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(refused.set_cookie.is_none());

    let dora = sso.server.user_id("dora");
    staff::grant_role(sso.server.state(), &dora, Role::Dpo)
        .await
        .unwrap();
    let second = token().await;
    let session = Console::sign_in_with(&url, json!({ "login_token": second })).await;
    assert_eq!(session.user_id(), dora);
    assert_eq!(session.get("/holds").await.0, 200);

    // A login token is spent once, for the console as for /login.
    let again = Console::try_sign_in_with(&url, json!({ "login_token": second })).await;
    assert_eq!(again.status, 403, "{again:?}");
    assert!(again.set_cookie.is_none());
    sso.server.stop().await;
}
