//! What every provider shares, shown with OpenID Connect: user-interactive
//! auth at the provider, password login switched off, `cloister user link`.

use cloister_tests::browser::Browser;
use cloister_tests::oidc;
use cloister_tests::process::run_command;
use cloister_tests::{errcode, Backend, Client};
use serde_json::json;

use crate::{assert_refused, start};

#[tokio::test]
async fn an_sso_only_account_confirms_sensitive_actions_at_its_provider() {
    let sso = start(Backend::Sqlite, None, |_| {}).await;
    let laptop = sso.login("sub-kim", "kim", Some("LAPTOP")).await;
    let old_phone = sso.login("sub-kim", "kim", Some("OLDPHONE")).await;
    sso.login("sub-lee", "lee", None).await;

    // No password to ask for: the only flow is the provider.
    let delete = json!({"devices": ["OLDPHONE"]});
    let (status, challenge) = laptop
        .post("/_matrix/client/v3/delete_devices", delete.clone())
        .await;
    assert_eq!(status, 401, "{challenge}");
    assert_eq!(challenge["flows"], json!([{"stages": ["m.login.sso"]}]));
    let session = challenge["session"].as_str().unwrap().to_owned();
    let fallback = format!(
        "{}/_matrix/client/v3/auth/m.login.sso/fallback/web?session={session}",
        sso.server.url()
    );

    // Someone else signing in at the provider confirms nothing.
    let lee = Browser::new();
    sso.op
        .sign_in_as("sub-lee", json!({"preferred_username": "lee"}))
        .await;
    let page = lee
        .follow(&format!("{fallback}&idp=keycloak"), "http://app.example/")
        .await;
    assert_refused(&sso, &page, 403, "someone else", "sso_wrong_account").await;
    let (status, _) = laptop
        .post(
            "/_matrix/client/v3/delete_devices",
            json!({"devices": ["OLDPHONE"], "auth": {"session": session}}),
        )
        .await;
    assert_eq!(status, 401, "not confirmed yet");

    // Kim confirms through the fallback page the client opens.
    let browser = Browser::new();
    let choose = browser.get(&fallback).await;
    assert_eq!(choose.status, 200, "{}", choose.body);
    assert!(
        choose.body.contains("Continue with Staff login"),
        "{}",
        choose.body
    );
    sso.op
        .sign_in_as("sub-kim", json!({"preferred_username": "kim"}))
        .await;
    let done = browser
        .follow(&format!("{fallback}&idp=keycloak"), "http://app.example/")
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    assert!(done.body.contains("authDone"), "{}", done.body);
    let csp = done.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
    let (status, body) = laptop
        .post(
            "/_matrix/client/v3/delete_devices",
            json!({"devices": ["OLDPHONE"], "auth": {"session": session}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        old_phone.get("/_matrix/client/v3/account/whoami").await.0,
        401
    );
    assert_eq!(laptop.whoami().await["device_id"], "LAPTOP");
    sso.server.stop().await;
}

#[tokio::test]
async fn password_login_can_be_kept_for_admins_or_switched_off() {
    use cloister_server::config::PasswordLoginMode;
    let sso = start(Backend::Sqlite, None, |c| {
        c.sso.password_login = PasswordLoginMode::Admins;
        c.oidc[0].icon = "mxc://localhost/staff-login-icon".into();
        c.oidc[0].brand = "keycloak".into();
    })
    .await;
    let url = sso.server.url();
    let (_, flows) = Client::anonymous(&url)
        .get("/_matrix/client/v3/login")
        .await;
    assert!(flows["flows"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["type"] == "m.login.password"));
    let sso_flow = flows["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["type"] == "m.login.sso")
        .unwrap();
    assert_eq!(
        sso_flow["identity_providers"][0]["icon"],
        "mxc://localhost/staff-login-icon"
    );
    assert_eq!(sso_flow["identity_providers"][0]["brand"], "keycloak");
    sso.server.register_admin("root").await;
    Client::register(&url, "mia", "mia-password-1").await;
    let root = Client::try_login(&url, "root", "admin-pw", None).await;
    assert!(root.is_ok(), "admins keep their password: {:?}", root.err());
    let refused = Client::try_login(&url, "mia", "mia-password-1", None)
        .await
        .unwrap_err();
    assert_eq!(
        (refused.0, errcode(&refused.1)),
        (403, Some("M_FORBIDDEN")),
        "{}",
        refused.1
    );
    assert!(refused.1["error"]
        .as_str()
        .unwrap()
        .contains("single sign-on"));
    let wrong = Client::try_login(&url, "mia", "wrong", None)
        .await
        .unwrap_err();
    assert!(
        wrong.1["error"].as_str().unwrap().contains("Invalid"),
        "a wrong password says only that"
    );

    let mut server = sso.server;
    server
        .restart_with(|c| c.sso.password_login = PasswordLoginMode::Off)
        .await;
    let url = server.url();
    let (_, flows) = Client::anonymous(&url)
        .get("/_matrix/client/v3/login")
        .await;
    assert!(
        !flows["flows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["type"] == "m.login.password"),
        "{flows}"
    );
    let refused = Client::try_login(&url, "root", "admin-pw", None)
        .await
        .unwrap_err();
    assert_eq!(refused.0, 403);
    server.stop().await;
}

#[tokio::test]
async fn the_operator_links_a_local_account_to_its_identity() {
    let sso = start(Backend::Sqlite, None, |_| {}).await;
    let nina = Client::register(&sso.server.url(), "nina", "nina-password-1").await;
    // Her first SSO sign-in is refused: the name is taken by her local account.
    let page = sso.browse("sub-nina", "nina").await;
    assert_refused(
        &sso,
        &page,
        403,
        "already exists and is not linked",
        "sso_account_conflict",
    )
    .await;

    let env: Vec<(String, String)> = [
        ("CLOISTER_OIDC__0__ID", "keycloak".to_owned()),
        ("CLOISTER_OIDC__0__ISSUER", sso.op.issuer()),
        ("CLOISTER_OIDC__0__CLIENT_ID", oidc::CLIENT_ID.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let run = |args: &'static [&'static str]| run_command(&sso.server, args, env.clone());
    let linked = run(&[
        "user",
        "link",
        "nina",
        "--provider",
        "keycloak",
        "--subject",
        "sub-nina",
    ])
    .await;
    assert!(
        linked.status.success(),
        "{}",
        String::from_utf8_lossy(&linked.stderr)
    );
    let listed = run(&["user", "links", "nina"]).await;
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).trim(),
        format!("{}\tsub-nina", sso.op.issuer())
    );
    // The same identity cannot belong to two accounts.
    Client::register(&sso.server.url(), "other", "other-password-1").await;
    let twice = run(&[
        "user",
        "link",
        "other",
        "--provider",
        "keycloak",
        "--subject",
        "sub-nina",
    ])
    .await;
    assert!(!twice.status.success());
    assert!(String::from_utf8_lossy(&twice.stderr).contains(&sso.server.user_id("nina")));
    let unknown = run(&[
        "user",
        "link",
        "other",
        "--provider",
        "nope",
        "--subject",
        "x",
    ])
    .await;
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no identity provider"));

    // Now SSO signs her into the account she had.
    let again = sso.login("sub-nina", "nina", None).await;
    assert_eq!(again.whoami().await["user_id"], nina.user_id);
    assert!(sso.server.audit_count("%\"sso_link\"%").await >= 1);

    let unlinked = run(&[
        "user",
        "unlink",
        "nina",
        "--provider",
        "keycloak",
        "--subject",
        "sub-nina",
    ])
    .await;
    assert!(
        unlinked.status.success(),
        "{}",
        String::from_utf8_lossy(&unlinked.stderr)
    );
    let page = sso.browse("sub-nina", "nina").await;
    assert_refused(&sso, &page, 403, "already exists", "sso_account_conflict").await;
    sso.server.stop().await;
}
