//! SAML 2.0 single sign-on against a real identity provider (pysaml2 with
//! xmlsec1, tests/src/saml.rs): the SSO redirect, the IdP, the browser's
//! POST to the Assertion Consumer Service, `m.login.token` — and the forged
//! responses every service provider must refuse.

use std::net::{Ipv4Addr, SocketAddr};

use cloister_server::config::{Config, Saml};
use cloister_tests::browser::{Browser, Page};
use cloister_tests::oauth::{pkce, query, scope, App, Browser as OAuthBrowser};
use cloister_tests::saml::{PostForm, SamlIdp, EVIL_NAME_ID, EVIL_UID};
use cloister_tests::{encode, errcode, free_port, Backend, Client, ServerProcess, TestServer};
use serde_json::{json, Value};

/// The app's `redirectUrl`; on `sso.client_allowlist`.
const APP: &str = "http://app.example/after-login";

struct Sso {
    server: TestServer,
    idp: SamlIdp,
    /// Keeps the certificate file the server reads at start.
    _dir: tempfile::TempDir,
}

/// An IdP that knows a server on a port chosen first, and that server.
async fn start(backend: Backend) -> Sso {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let entity_id = format!("{base}/_cloister/client/saml/metadata");
    let idp = SamlIdp::start(&entity_id, &format!("{base}/_cloister/client/saml/acs")).await;
    let dir = tempfile::tempdir().unwrap();
    let certificate = dir.path().join("idp.pem");
    std::fs::write(&certificate, idp.certificate_pem()).unwrap();
    let server = TestServer::start_with(backend, |c: &mut Config| {
        c.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        c.public_baseurl = format!("{base}/");
        let mut provider = Saml {
            id: "uni".into(),
            name: "University login".into(),
            idp_entity_id: idp.entity_id(),
            idp_sso_url: idp.sso_url(),
            idp_certificate_file: certificate.display().to_string(),
            localpart_attribute: "urn:oid:0.9.2342.19200300.100.1.1".into(),
            display_name_attribute: "displayName".into(),
            mail_attribute: "mail".into(),
            ..Saml::default()
        };
        provider.idp_certificates = vec![idp.certificate_pem()];
        c.saml = vec![provider];
        c.sso.client_allowlist = vec!["http://app.example/".into()];
    })
    .await;
    Sso {
        server,
        idp,
        _dir: dir,
    }
}

fn person(uid: &str) -> Value {
    json!({
        "urn:oid:0.9.2342.19200300.100.1.1": [uid],
        "displayName": [format!("{uid} (staff)")],
        "mail": [format!("{uid}@example.edu")],
    })
}

impl Sso {
    fn redirect_url(&self, server_url: &str) -> String {
        format!(
            "{server_url}/_matrix/client/v3/login/sso/redirect/uni?redirectUrl={}",
            encode(APP)
        )
    }

    /// The browser goes to the IdP and comes back with its form, not yet
    /// posted.
    async fn form(&self, browser: &Browser) -> PostForm {
        let at_idp = browser
            .follow(
                &self.redirect_url(&self.server.url()),
                "http://app.example/",
            )
            .await;
        assert_eq!(at_idp.status, 200, "{at_idp:?}\n{}", self.idp.log());
        PostForm::from_html(&at_idp.body).expect("the IdP's POST form")
    }

    /// `name_id` signs in at the IdP; the answer to the browser's POST.
    async fn browse(&self, name_id: &str, uid: &str) -> Page {
        self.idp.sign_in_as(name_id, person(uid)).await;
        let browser = Browser::new();
        self.form(&browser).await.submit(&browser).await
    }

    async fn login(&self, name_id: &str, uid: &str) -> (u16, Value) {
        let page = self.browse(name_id, uid).await;
        let location = page.location.clone().unwrap_or_default();
        assert!(
            location.starts_with(&format!("{APP}?loginToken=")),
            "no login for the app: {page:?}\n{}",
            self.idp.log()
        );
        let token = location.split("loginToken=").nth(1).unwrap().to_owned();
        Client::anonymous(&self.server.url())
            .post(
                "/_matrix/client/v3/login",
                json!({"type": "m.login.token", "token": token}),
            )
            .await
    }

    /// A refused sign-in: a page, no login, the reason in the audit log.
    async fn assert_refused(&self, page: &Page, status: u16, says: &str, reason: &str) {
        assert!(
            page.location.is_none(),
            "the response was accepted: {page:?}"
        );
        assert_eq!(page.status, status, "{}", page.body);
        assert!(page.body.contains(says), "expected {says:?}: {}", page.body);
        assert!(
            self.server.audit_count(&format!("%\"{reason}\"%")).await >= 1,
            "the refusal is audited as {reason}"
        );
    }
}

#[tokio::test]
async fn a_university_idp_signs_people_in_through_the_sso_redirect() {
    for backend in Backend::ALL {
        let sso = start(backend).await;
        let anonymous = Client::anonymous(&sso.server.url());
        let (_, flows) = anonymous.get("/_matrix/client/v3/login").await;
        let flow = flows["flows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["type"] == "m.login.sso")
            .cloned()
            .expect("m.login.sso");
        assert_eq!(
            flow["identity_providers"],
            json!([{"id": "uni", "name": "University login"}])
        );
        let metadata = reqwest::get(format!(
            "{}/_cloister/client/saml/metadata",
            sso.server.url()
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        assert!(metadata.contains(&format!(
            "entityID=\"{}/_cloister/client/saml/metadata\"",
            sso.server.url()
        )));
        assert!(metadata.contains("/_cloister/client/saml/acs"));

        let (status, body) = sso.login("pid-alice-7f3", "Alice").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["user_id"], sso.server.user_id("alice"));
        let alice =
            Client::anonymous(&sso.server.url()).with_token(body["access_token"].as_str().unwrap());
        let (_, profile) = alice
            .get(&format!(
                "/_matrix/client/v3/profile/{}",
                encode(&sso.server.user_id("alice"))
            ))
            .await;
        assert_eq!(profile["displayname"], "Alice (staff)");

        // Linked on the persistent NameID: a changed uid is the same account.
        let (status, body) = sso.login("pid-alice-7f3", "alice.l").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["user_id"], sso.server.user_id("alice"));
        // Only-the-assertion and only-the-response signatures both count.
        for mode in ["assertion_signed", "response_signed"] {
            sso.idp.set_mode(mode).await;
            let (status, body) = sso.login("pid-alice-7f3", "alice").await;
            assert_eq!(
                (status, &body["user_id"]),
                (200, &json!(sso.server.user_id("alice"))),
                "{mode}: {body}"
            );
        }
        sso.server.stop().await;
    }
}

#[tokio::test]
async fn forged_and_misdirected_responses_are_refused() {
    let sso = start(Backend::Sqlite).await;
    let cases = [
        ("unsigned", 403, "could not be verified", "sso_unsigned"),
        (
            "tampered",
            403,
            "could not be verified",
            "sso_bad_signature",
        ),
        (
            "xsw_sibling",
            403,
            "could not be verified",
            "sso_signature_wrapping",
        ),
        (
            "xsw_same_id",
            403,
            "could not be verified",
            "sso_signature_wrapping",
        ),
        (
            "xsw_wrapped",
            403,
            "could not be verified",
            "sso_signature_wrapping",
        ),
        (
            "xsw_extensions",
            403,
            "could not be verified",
            "sso_signature_wrapping",
        ),
        (
            "xsw_signature_object",
            403,
            "could not be verified",
            "sso_signature_wrapping",
        ),
        (
            "wrong_audience",
            403,
            "could not be verified",
            "sso_wrong_audience",
        ),
        ("expired", 403, "could not be verified", "sso_expired"),
    ];
    for (mode, status, says, reason) in cases {
        sso.idp.set_mode(mode).await;
        let pattern = format!("%\"{reason}\"%");
        let before = sso.server.audit_count(&pattern).await;
        let page = sso.browse("pid-bob", "bob").await;
        sso.assert_refused(&page, status, says, reason).await;
        assert_eq!(
            sso.server.audit_count(&pattern).await,
            before + 1,
            "{mode} is refused as {reason}"
        );
    }
    // Nobody got in, least of all the forged identity.
    for localpart in ["bob", EVIL_UID] {
        assert_eq!(
            sso.server
                .count(
                    "SELECT COUNT(*) FROM users WHERE user_id = $1",
                    &sso.server.user_id(localpart)
                )
                .await,
            0,
            "{localpart} must not exist"
        );
    }
    assert_eq!(
        sso.server
            .count(
                "SELECT COUNT(*) FROM identity_links WHERE subject = $1",
                EVIL_NAME_ID
            )
            .await,
        0
    );
    sso.server.stop().await;
}

#[tokio::test]
async fn a_response_counts_once_and_only_as_an_answer() {
    let sso = start(Backend::Sqlite).await;
    sso.idp.sign_in_as("pid-carol", person("carol")).await;

    // Replayed: the same POST twice.
    let browser = Browser::new();
    let form = sso.form(&browser).await;
    let first = form.submit(&browser).await;
    assert!(
        first.location.is_some_and(|l| l.starts_with(APP)),
        "the first use works"
    );
    let again = form.submit(&browser).await;
    sso.assert_refused(&again, 400, "already used", "sso_replayed")
        .await;

    // Unsolicited: a correctly signed, IdP-initiated response.
    let stray = sso.idp.unsolicited(Some("made-up-relay-state")).await;
    let page = stray.submit(&Browser::new()).await;
    sso.assert_refused(
        &page,
        400,
        "expired or was already completed",
        "sso_unsolicited",
    )
    .await;
    let stray = sso.idp.unsolicited(None).await;
    let page = stray.submit(&Browser::new()).await;
    sso.assert_refused(
        &page,
        400,
        "expired or was already completed",
        "sso_unsolicited",
    )
    .await;

    // A response to another browser's sign-in does not finish this one.
    let mine = Browser::new();
    let my_form = sso.form(&mine).await;
    let theirs = Browser::new();
    let their_form = sso.form(&theirs).await;
    let mut swapped = their_form.clone();
    if let Some(relay) = swapped.fields.iter_mut().find(|(k, _)| k == "RelayState") {
        relay.1 = my_form.field("RelayState").unwrap().to_owned();
    }
    let page = swapped.submit(&mine).await;
    sso.assert_refused(
        &page,
        400,
        "expired or was already completed",
        "sso_unsolicited",
    )
    .await;
    sso.server.stop().await;
}

#[tokio::test]
async fn a_local_account_is_not_taken_over_and_a_deactivated_one_stays_out() {
    let sso = start(Backend::Sqlite).await;
    Client::register(&sso.server.url(), "dave", "dave-password-1").await;
    let page = sso.browse("pid-dave", "dave").await;
    sso.assert_refused(
        &page,
        403,
        "already exists and is not linked",
        "sso_account_conflict",
    )
    .await;

    let (status, _) = sso.login("pid-erin", "erin").await;
    assert_eq!(status, 200);
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
    let page = sso.browse("pid-erin", "erin").await;
    sso.assert_refused(&page, 403, "deactivated", "sso_deactivated")
        .await;
    // And a login token issued before the deactivation is no way back in.
    let (status, body) = Client::anonymous(&sso.server.url())
        .post(
            "/_matrix/client/v3/login",
            json!({"type": "m.login.token", "token": "clsso_unknown"}),
        )
        .await;
    assert_eq!((status, errcode(&body)), (403, Some("M_FORBIDDEN")));
    sso.server.stop().await;
}

#[tokio::test]
async fn a_sign_in_begun_on_one_node_finishes_on_another() {
    let sso = start(Backend::Postgres).await;
    // A second `cloister serve` process on the same database, configured
    // from the environment, behind the same public URL.
    let provider = &sso.server.config().saml[0];
    let env = [
        ("CLOISTER_PUBLIC_BASEURL", format!("{}/", sso.server.url())),
        ("CLOISTER_SAML__0__ID", "uni".into()),
        (
            "CLOISTER_SAML__0__IDP_ENTITY_ID",
            provider.idp_entity_id.clone(),
        ),
        (
            "CLOISTER_SAML__0__IDP_SSO_URL",
            provider.idp_sso_url.clone(),
        ),
        (
            "CLOISTER_SAML__0__IDP_CERTIFICATE_FILE",
            provider.idp_certificate_file.clone(),
        ),
        (
            "CLOISTER_SAML__0__LOCALPART_ATTRIBUTE",
            provider.localpart_attribute.clone(),
        ),
        (
            "CLOISTER_SSO__CLIENT_ALLOWLIST",
            "[\"http://app.example/\"]".into(),
        ),
    ];
    let env = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let mut peer = ServerProcess::start_peer_with_env(&sso.server, env).await;
    sso.idp.sign_in_as("pid-jo", person("jo")).await;
    let browser = Browser::new();
    let mut form = sso.form(&browser).await;
    // The load balancer sends the browser's POST to the other node.
    form.action = form.action.replacen(&sso.server.url(), &peer.url(), 1);
    let page = form.submit(&browser).await;
    let location = page
        .location
        .clone()
        .unwrap_or_else(|| panic!("back to the app: {page:?}\n{}", peer.log()));
    let token = location.split("loginToken=").nth(1).unwrap();
    let (status, body) = Client::anonymous(&sso.server.url())
        .post(
            "/_matrix/client/v3/login",
            json!({"type": "m.login.token", "token": token}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], sso.server.user_id("jo"));
    peer.kill().await;
    sso.server.stop().await;
}

/// Element X's way in for a SAML university: the OAuth 2.0 sign-in page
/// hands the sign-in on to the IdP, whose POSTed answer comes back to the
/// grant's page in the browser that began it; the app gets its tokens.
#[tokio::test]
async fn oauth_sign_in_hands_off_to_the_idp() {
    let sso = start(Backend::Sqlite).await;
    let url = sso.server.url();
    let app = App::register(&url).await;
    let (verifier, challenge) = pkce();
    let mut browser = OAuthBrowser::new();
    let authorize = app.authorize_url(&challenge, &scope("IVYPHONE001"), "s");
    let (page_url, page) = browser.open(&authorize).await;
    let href = page.provider_link("uni").expect("a link to the IdP");
    sso.idp.sign_in_as("name-ivy", person("ivy")).await;
    let to_idp = browser.get(&format!("{url}{href}")).await;
    assert_eq!(to_idp.status, 303, "{to_idp:?}");
    // The IdP's side, in a browser with a cookie jar: its form, posted.
    let at_idp = Browser::new();
    let form_page = at_idp
        .follow(&to_idp.location.unwrap(), "http://never.example/")
        .await;
    let form = PostForm::from_html(&form_page.body).expect("the IdP's POST form");
    let posted = form.submit(&at_idp).await;
    let back = posted.location.clone().unwrap_or_default();
    let grant_page = page_url.split('?').next().unwrap();
    assert!(
        back.starts_with(&format!("{grant_page}/sso_return?loginToken=")),
        "{posted:?}\n{}",
        sso.idp.log()
    );
    let returned = browser.get(&back).await;
    assert_eq!(returned.status, 303, "{returned:?}");
    let consent = browser.get(&returned.location.unwrap()).await;
    let ivy = sso.server.user_id("ivy");
    assert!(consent.body.contains(&ivy), "{}", consent.body);
    let to_app = browser.decide(&page_url, &consent, true).await;
    let (status, tokens) = app
        .exchange(&query(&to_app, "code").unwrap(), &verifier)
        .await;
    assert_eq!(status, 200, "{tokens}");
    let me = Client::anonymous(&url)
        .with_token(tokens["access_token"].as_str().unwrap())
        .whoami()
        .await;
    assert_eq!(me["user_id"], ivy.as_str(), "{me}");
    sso.server.stop().await;
}
