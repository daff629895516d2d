//! Element X's sign-in on Cloister: matrix-sdk's OAuth 2.0 login against
//! Cloister's own authorization server (MSC3861): discovery from the
//! homeserver URL, dynamic client registration, the authorization code
//! grant with PKCE (the test plays the person's browser over HTTP, on
//! Cloister's sign-in and consent pages), then sliding sync with the token
//! it got; when the access token expires, matrix-sdk refreshes it (the
//! server's clock is moved on), and revoking the token ends the session.

use cloister_element_x_tests::{init_tracing, wait_until, PASSWORD};
use cloister_tests::oauth::Browser;
use cloister_tests::Backend;
use cloister_tests::{Client as RawClient, ManualClock, TestServer};
use matrix_sdk::authentication::oauth::registration::{
    ApplicationType, ClientMetadata, Localized, OAuthGrantType,
};
use matrix_sdk::authentication::oauth::ClientRegistrationData;
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::sliding_sync::VersionBuilder;
use matrix_sdk::{AuthApi, Client};
use matrix_sdk_ui::room_list_service::filters::new_filter_non_left;
use matrix_sdk_ui::sync_service::SyncService;
use serde_json::json;
use url::Url;

const REDIRECT: &str = "http://127.0.0.1:1/callback";

fn registration() -> ClientRegistrationData {
    let client_uri = Url::parse("https://element.example.org/").unwrap();
    let mut metadata = ClientMetadata::new(
        ApplicationType::Native,
        vec![
            OAuthGrantType::AuthorizationCode {
                redirect_uris: vec![Url::parse(REDIRECT).unwrap()],
            },
            OAuthGrantType::DeviceCode,
        ],
        Localized::new(client_uri, []),
    );
    metadata.client_name = Some(Localized::new("Element X (matrix-sdk test)".to_owned(), []));
    Raw::new(&metadata).expect("serialize the metadata").into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn element_x_signs_in_through_the_oauth_api_and_refreshes() {
    init_tracing();
    let server =
        TestServer::start_with_clock(Backend::Sqlite, ManualClock::new(1_800_000_000_000), |_| {})
            .await;
    let clock = server.clock().unwrap();
    let url = server.url();
    let alice_http = RawClient::register(&url, "alice", PASSWORD).await;
    let room = alice_http
        .create_room(json!({ "name": "from the laptop" }))
        .await;

    let client = Client::builder()
        .homeserver_url(&url)
        .sliding_sync_version_builder(VersionBuilder::DiscoverNative)
        .handle_refresh_tokens()
        .build()
        .await
        .expect("build the matrix-sdk client");
    let oauth = client.oauth();
    let data = oauth
        .login(
            Url::parse(REDIRECT).unwrap(),
            None,
            Some(registration()),
            None,
        )
        .build()
        .await
        .expect("discover, register and build the authorization URL");

    // The person's part, in the browser.
    let back = Browser::new()
        .sign_in_and_allow(data.url.as_str(), "alice", PASSWORD)
        .await;
    assert!(back.starts_with(REDIRECT), "{back}");
    oauth
        .finish_login(Url::parse(&back).unwrap().into())
        .await
        .expect("exchange the code");
    assert!(matches!(client.auth_api(), Some(AuthApi::OAuth(_))));
    assert_eq!(client.user_id().unwrap().as_str(), alice_http.user_id);
    let device_id = client.device_id().unwrap().to_owned();
    // The device is Alice's: her other session sees it.
    let devices = alice_http.get("/_matrix/client/v3/devices").await.1;
    assert!(
        devices["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["device_id"] == device_id.as_str()),
        "{devices}"
    );

    // Sliding sync with the OAuth token: the room list shows her room.
    let sync = SyncService::builder(client.clone()).build().await.unwrap();
    sync.start().await;
    let rooms = sync.room_list_service();
    let all = rooms.all_rooms().await.unwrap();
    let (entries, controller) = all.entries_with_dynamic_adapters(20);
    controller.set_filter(Box::new(new_filter_non_left()));
    drop(entries);
    let room_id = matrix_sdk::ruma::OwnedRoomId::try_from(room.as_str()).unwrap();
    wait_until("the room in the room list", || async {
        client.get_room(&room_id).map(|_| ())
    })
    .await;
    sync.stop().await;

    // Ten minutes later the access token has expired; matrix-sdk refreshes
    // it on the 401 (soft logout) and the request goes through.
    let before = client.access_token().unwrap();
    clock.advance_ms(10 * 60_000);
    let me = client.whoami().await.expect("whoami after a refresh");
    assert_eq!(me.user_id.as_str(), alice_http.user_id);
    assert_ne!(
        client.access_token().unwrap(),
        before,
        "the token was refreshed"
    );

    // Logging out revokes the session: the device is gone. matrix-sdk
    // 0.18's logout insists on an https revocation endpoint even where it
    // accepted http for everything else (here: InsecureUrl("revocation")),
    // so the test sends the RFC 7009 request it would send.
    let token = client.access_token().unwrap();
    let client_id = oauth.client_id().expect("registered").as_str().to_owned();
    let revoked = reqwest::Client::new()
        .post(format!("{url}/_cloister/oauth2/revoke"))
        .form(&[("token", token.as_str()), ("client_id", client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let (status, _) = alice_http
        .with_token(&token)
        .get("/_matrix/client/v3/account/whoami")
        .await;
    assert_eq!(status, 401);
    let devices = alice_http.get("/_matrix/client/v3/devices").await.1;
    assert!(
        !devices["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["device_id"] == device_id.as_str()),
        "{devices}"
    );
    server.stop().await;
}
