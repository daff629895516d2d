//! Smoke test of the OpenID provider harness (`cloister_tests::oidc`) and
//! the stand-in browser, with no Cloister in the loop: a stand-in relying
//! party does the authorization-code flow with PKCE, exchanges the code,
//! reads the ID token, sees the key rotate and takes a back-channel logout.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cloister_tests::browser::Browser;
use cloister_tests::oidc::{OidcProvider, CLIENT_ID, CLIENT_SECRET};
use serde_json::{json, Value};

/// A PKCE pair: the challenge is the verifier's SHA-256, base64url.
const VERIFIER: &str = "cloister-oidc-harness-smoke-test-verifier-0123456789";
const CHALLENGE: &str = "AebZIx2IOhRgaRlkQnJ2fQ0OTjcs0DB2pj6kKNJbzOQ";

type Received = Arc<Mutex<Vec<String>>>;

/// The relying party's back-channel logout endpoint: records the bodies.
async fn relying_party() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route(
            "/backchannel",
            post(
                |State(received): State<Received>, body: String| async move {
                    received.lock().unwrap().push(body);
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// The claims of a JWT, unverified.
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn kids(issuer: &str) -> Vec<Value> {
    let jwks: Value = reqwest::get(format!("{issuer}/jwks"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_code_and_pkce_then_back_channel_logout() {
    let (rp, received) = relying_party().await;
    let redirect_uri = format!("{rp}/callback");
    let op = OidcProvider::start(&redirect_uri, &format!("{rp}/backchannel")).await;
    let issuer = op.issuer();

    let discovery: Value = reqwest::get(format!("{issuer}/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], issuer.as_str());
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(discovery["backchannel_logout_session_supported"], true);

    op.sign_in_as(
        "alice-sub",
        json!({"preferred_username": "alice", "name": "Alice Liddell", "email": "alice@example.org"}),
    )
    .await;
    let mut auth =
        reqwest::Url::parse(discovery["authorization_endpoint"].as_str().unwrap()).unwrap();
    auth.query_pairs_mut()
        .append_pair("client_id", CLIENT_ID)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid profile email")
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("state", "the-state")
        .append_pair("nonce", "the-nonce")
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    let browser = Browser::new();
    let page = browser.follow(auth.as_str(), &redirect_uri).await;
    assert!(page.stopped(), "{page:#?}\n{}", op.log());
    assert_eq!(page.hops.len(), 3, "{page:#?}");
    assert!(page.hops[0].starts_with(&format!("{issuer}/interaction/")));
    assert_eq!(page.query("state").as_deref(), Some("the-state"));
    assert_eq!(page.query("iss").as_deref(), Some(issuer.as_str()));
    let code = page.query("code").expect("a code");

    let token: Value = reqwest::Client::new()
        .post(discovery["token_endpoint"].as_str().unwrap())
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id_token = claims(token["id_token"].as_str().expect("an ID token"));
    assert_eq!(id_token["sub"], "alice-sub");
    assert_eq!(id_token["aud"], CLIENT_ID);
    assert_eq!(id_token["nonce"], "the-nonce");
    assert_eq!(id_token["preferred_username"], "alice");
    assert_eq!(id_token["email_verified"], true);
    let sid = id_token["sid"].as_str().expect("a sid").to_owned();
    assert_eq!(op.session_ids("alice-sub").await, vec![sid.clone()]);

    let before = kids(&issuer).await;
    let kid = op.rotate_keys().await;
    assert_eq!(kids(&issuer).await, vec![json!(kid)]);
    assert_ne!(before, vec![json!(kid)]);

    let logout = op.backchannel_logout("alice-sub").await;
    assert_eq!(logout["sent"], 1, "{logout}");
    assert_eq!(logout["statuses"], json!([200]), "{logout}");
    let body = received.lock().unwrap().pop().expect("a logout request");
    let logout_token = body.strip_prefix("logout_token=").expect("a logout token");
    let logout_claims = claims(logout_token);
    assert_eq!(logout_claims["sub"], "alice-sub");
    assert_eq!(logout_claims["sid"], sid.as_str());
    assert!(logout_claims["events"]
        .get("http://schemas.openid.net/event/backchannel-logout")
        .is_some());
    assert!(op.session_ids("alice-sub").await.is_empty());
}
