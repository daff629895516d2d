//! A minimal Matrix client over reqwest and JSON, for driving the server the
//! way real clients do. The generic `get`/`post`/`put`/`delete` return
//! `(status, body)` and never panic on an error status, so tests can assert
//! on failures; the typed helpers (`sync`, `create_room`, …) panic with the
//! request and the server's answer when the server refuses.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::keys::{random_b64, DeviceKeys, MEGOLM_ALGORITHM};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Percent-encodes one path segment or query value (everything except the
/// RFC 3986 unreserved characters).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The `errcode` of a Matrix error body, if any.
pub fn errcode(body: &Value) -> Option<&str> {
    body.get("errcode").and_then(Value::as_str)
}

/// Asserts that an answer is a refusal with this status and errcode, in the
/// Matrix error shape (a string `error` too); `what` names the attempt.
#[track_caller]
pub fn assert_refused(got: (u16, Value), status: u16, code: &str, what: &str) {
    assert_eq!(
        (got.0, errcode(&got.1)),
        (status, Some(code)),
        "{what}: {}",
        got.1
    );
    assert!(got.1["error"].is_string(), "{what}: {}", got.1);
}

/// A fake but well-formed Megolm `m.room.encrypted` content: the server
/// cannot (and must not) look inside, so random ciphertext is realistic.
pub fn megolm_content(sender_key: &str, device_id: &str) -> Value {
    json!({
        "algorithm": MEGOLM_ALGORITHM,
        "sender_key": sender_key,
        "device_id": device_id,
        "session_id": random_b64(32),
        "ciphertext": random_b64(160),
    })
}

/// A logged-in (or anonymous) client of one server.
#[derive(Clone)]
pub struct Client {
    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub base_url: String,
    pub user_id: String,
    pub device_id: String,
    pub access_token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url)
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("build the HTTP client")
}

impl Client {
    /// A client without an access token (for unauthenticated endpoints and
    /// for checking that authenticated ones refuse).
    pub fn anonymous(server_url: &str) -> Client {
        Client {
            base_url: server_url.trim_end_matches('/').to_owned(),
            user_id: String::new(),
            device_id: String::new(),
            access_token: String::new(),
            http: http_client(),
        }
    }

    /// Registers `localpart` (registration must be open) and returns the
    /// logged-in client. Panics with the server's answer on failure.
    pub async fn register(server_url: &str, localpart: &str, password: &str) -> Client {
        let body = json!({ "username": localpart, "password": password });
        match Self::try_register(server_url, body).await {
            Ok(client) => client,
            Err((status, body)) => {
                panic!("registering {localpart:?} failed: HTTP {status} {body}")
            }
        }
    }

    /// Registers with a chosen device id.
    pub async fn register_device(
        server_url: &str,
        localpart: &str,
        password: &str,
        device_id: &str,
    ) -> Client {
        let body = json!({ "username": localpart, "password": password, "device_id": device_id });
        match Self::try_register(server_url, body).await {
            Ok(client) => client,
            Err((status, body)) => {
                panic!("registering {localpart:?} failed: HTTP {status} {body}")
            }
        }
    }

    /// `POST /register` with `body` (username, password, device_id…) through
    /// the user-interactive-auth dance: the first answer is 401 with a
    /// session; the second request completes `m.login.dummy` in it. Returns
    /// the failing `(status, body)` when the server refuses.
    pub async fn try_register(server_url: &str, body: Value) -> Result<Client, (u16, Value)> {
        let anon = Client::anonymous(server_url);
        let path = "/_matrix/client/v3/register";
        let (status, first) = anon.post(path, body.clone()).await;
        let answer = match status {
            200 => first,
            401 => {
                let session = first
                    .get("session")
                    .and_then(Value::as_str)
                    .ok_or_else(|| (status, first.clone()))?;
                let mut body = body;
                body["auth"] = json!({ "type": "m.login.dummy", "session": session });
                let (status, second) = anon.post(path, body).await;
                if status != 200 {
                    return Err((status, second));
                }
                second
            }
            _ => return Err((status, first)),
        };
        Ok(anon.logged_in(&answer))
    }

    /// Logs in with a password (`m.id.user` identifier). Panics on failure.
    pub async fn login(
        server_url: &str,
        localpart: &str,
        password: &str,
        device_id: Option<&str>,
    ) -> Client {
        match Self::try_login(server_url, localpart, password, device_id).await {
            Ok(client) => client,
            Err((status, body)) => panic!("login as {localpart:?} failed: HTTP {status} {body}"),
        }
    }

    pub async fn try_login(
        server_url: &str,
        localpart: &str,
        password: &str,
        device_id: Option<&str>,
    ) -> Result<Client, (u16, Value)> {
        let anon = Client::anonymous(server_url);
        let mut body = json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": localpart },
            "password": password,
        });
        if let Some(device_id) = device_id {
            body["device_id"] = json!(device_id);
        }
        let (status, answer) = anon.post("/_matrix/client/v3/login", body).await;
        if status != 200 {
            return Err((status, answer));
        }
        Ok(anon.logged_in(&answer))
    }

    fn logged_in(&self, answer: &Value) -> Client {
        let field = |name: &str| {
            answer
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("login/register answer lacks {name:?}: {answer}"))
                .to_owned()
        };
        Client {
            base_url: self.base_url.clone(),
            user_id: field("user_id"),
            device_id: field("device_id"),
            access_token: field("access_token"),
            http: self.http.clone(),
        }
    }

    /// The same identity against another base URL (after a restart that
    /// changed the port).
    pub fn with_base(&self, server_url: &str) -> Client {
        Client {
            base_url: server_url.trim_end_matches('/').to_owned(),
            ..self.clone()
        }
    }

    /// The same base URL with another (or an empty) access token.
    pub fn with_token(&self, access_token: &str) -> Client {
        Client {
            access_token: access_token.to_owned(),
            ..self.clone()
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    fn builder(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, self.url(path));
        if self.access_token.is_empty() {
            request
        } else {
            request.bearer_auth(&self.access_token)
        }
    }

    /// Sends a JSON request (`Value::Null` sends no body) and returns the
    /// status and the parsed body (`Null` when empty, a string when not JSON).
    /// Panics only when the server cannot be reached at all.
    pub async fn request(&self, method: Method, path: &str, body: Value) -> (u16, Value) {
        let mut request = self.builder(method.clone(), path);
        if !body.is_null() {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: no answer from {}: {e}", self.base_url));
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: reading the answer failed: {e}"));
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request(Method::GET, path, Value::Null).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(Method::POST, path, body).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(Method::PUT, path, body).await
    }

    pub async fn delete(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(Method::DELETE, path, body).await
    }

    /// Sends raw bytes; returns status, content type and body bytes.
    pub async fn request_bytes(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Option<String>, Vec<u8>) {
        let mut request = self.builder(method.clone(), path);
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        if !body.is_empty() {
            request = request.body(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: no answer from {}: {e}", self.base_url));
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: reading the answer failed: {e}"));
        (status, content_type, bytes.to_vec())
    }

    /// Like `request`, but panics unless the status is 200; returns the body.
    pub async fn expect_ok(&self, method: Method, path: &str, body: Value) -> Value {
        let (status, answer) = self.request(method.clone(), path, body).await;
        assert_eq!(
            status, 200,
            "{method} {path} as {}: expected 200, got {status} {answer}",
            self.user_id
        );
        answer
    }

    // ----- account ---------------------------------------------------------

    /// `GET /account/whoami`; panics unless 200.
    pub async fn whoami(&self) -> Value {
        self.expect_ok(
            Method::GET,
            "/_matrix/client/v3/account/whoami",
            Value::Null,
        )
        .await
    }

    pub async fn logout(&self) -> (u16, Value) {
        self.post("/_matrix/client/v3/logout", json!({})).await
    }

    // ----- sync --------------------------------------------------------------

    /// One `/sync` (no filter); panics unless 200.
    pub async fn sync(&self, since: Option<&str>, timeout_ms: u64) -> Value {
        let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}");
        if let Some(since) = since {
            path.push_str(&format!("&since={}", encode(since)));
        }
        self.expect_ok(Method::GET, &path, Value::Null).await
    }

    /// Syncs (long-polling, from `since`) until a response satisfies `pred`,
    /// and returns that response; panics after `within`. Continue from its
    /// `next_batch`.
    pub async fn sync_until(
        &self,
        since: Option<&str>,
        within: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        let mut since = since.map(str::to_owned);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let poll_ms = left.as_millis().min(5_000) as u64;
            let response = self.sync(since.as_deref(), poll_ms).await;
            if pred(&response) {
                return response;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}: no /sync response matched within {within:?}; last: {response}",
                    self.user_id
                );
            }
            since = response
                .get("next_batch")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or(since);
        }
    }

    /// One simplified sliding sync (MSC4186) request: (status, body).
    pub async fn sliding_sync(
        &self,
        pos: Option<&str>,
        timeout_ms: u64,
        body: Value,
    ) -> (u16, Value) {
        let mut path = format!(
            "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync?timeout={timeout_ms}"
        );
        if let Some(pos) = pos {
            path.push_str(&format!("&pos={}", encode(pos)));
        }
        self.post(&path, body).await
    }

    // ----- rooms -------------------------------------------------------------

    /// `POST /createRoom`; returns the room id. Panics unless 200.
    pub async fn create_room(&self, body: Value) -> String {
        let answer = self
            .expect_ok(Method::POST, "/_matrix/client/v3/createRoom", body)
            .await;
        answer["room_id"]
            .as_str()
            .unwrap_or_else(|| panic!("createRoom answer lacks room_id: {answer}"))
            .to_owned()
    }

    pub async fn invite(&self, room_id: &str, user_id: &str) -> (u16, Value) {
        self.post(
            &format!("/_matrix/client/v3/rooms/{}/invite", encode(room_id)),
            json!({ "user_id": user_id }),
        )
        .await
    }

    /// `POST /join/{room_id_or_alias}`; returns the room id. Panics unless 200.
    pub async fn join(&self, room_id_or_alias: &str) -> String {
        let answer = self
            .expect_ok(
                Method::POST,
                &format!("/_matrix/client/v3/join/{}", encode(room_id_or_alias)),
                json!({}),
            )
            .await;
        answer["room_id"].as_str().unwrap_or_default().to_owned()
    }

    pub async fn leave(&self, room_id: &str) -> (u16, Value) {
        self.post(
            &format!("/_matrix/client/v3/rooms/{}/leave", encode(room_id)),
            json!({}),
        )
        .await
    }

    /// `PUT /rooms/{room}/send/{type}/{txn}` with any content.
    pub async fn send_event(
        &self,
        room_id: &str,
        event_type: &str,
        txn_id: &str,
        content: Value,
    ) -> (u16, Value) {
        self.put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/{}/{}",
                encode(room_id),
                encode(event_type),
                encode(txn_id)
            ),
            content,
        )
        .await
    }

    /// Sends a well-formed Megolm `m.room.encrypted` event; returns its id.
    /// Panics unless 200.
    pub async fn send_encrypted(&self, room_id: &str, txn_id: &str) -> String {
        let content = megolm_content(&random_b64(32), &self.device_id);
        let (status, answer) = self
            .send_event(room_id, "m.room.encrypted", txn_id, content)
            .await;
        assert_eq!(
            status, 200,
            "sending m.room.encrypted to {room_id} failed: {status} {answer}"
        );
        answer["event_id"]
            .as_str()
            .unwrap_or_else(|| panic!("send answer lacks event_id: {answer}"))
            .to_owned()
    }

    /// `PUT /rooms/{room}/state/{type}/{state_key}`.
    pub async fn put_state(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
        content: Value,
    ) -> (u16, Value) {
        self.put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/{}/{}",
                encode(room_id),
                encode(event_type),
                encode(state_key)
            ),
            content,
        )
        .await
    }

    /// `GET /rooms/{room}/state/{type}/{state_key}`.
    pub async fn get_state(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
    ) -> (u16, Value) {
        self.get(&format!(
            "/_matrix/client/v3/rooms/{}/state/{}/{}",
            encode(room_id),
            encode(event_type),
            encode(state_key)
        ))
        .await
    }

    /// `GET /rooms/{room}/messages?dir=b&limit=…`; panics unless 200.
    pub async fn messages(&self, room_id: &str, limit: u32) -> Value {
        self.expect_ok(
            Method::GET,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit={limit}",
                encode(room_id)
            ),
            Value::Null,
        )
        .await
    }

    // ----- keys ----------------------------------------------------------------

    /// Uploads device keys, `n_one_time` one-time keys and a fallback key;
    /// returns the `one_time_key_counts`. Panics unless 200.
    pub async fn upload_keys(&self, keys: &DeviceKeys, n_one_time: usize) -> Value {
        let answer = self
            .expect_ok(
                Method::POST,
                "/_matrix/client/v3/keys/upload",
                keys.upload_body(n_one_time),
            )
            .await;
        answer
            .get("one_time_key_counts")
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// A `DeviceKeys` for this client's user and device.
    pub fn device_keys(&self) -> DeviceKeys {
        DeviceKeys::generate(&self.user_id, &self.device_id)
    }

    // ----- media -----------------------------------------------------------------

    /// `POST /_matrix/media/v3/upload`; returns the `mxc://` URI. Panics unless 200.
    pub async fn upload_media(&self, bytes: Vec<u8>, content_type: &str, filename: &str) -> String {
        let path = format!("/_matrix/media/v3/upload?filename={}", encode(filename));
        let (status, _, body) = self
            .request_bytes(Method::POST, &path, Some(content_type), bytes)
            .await;
        let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_eq!(
            status,
            200,
            "media upload failed: {status} {}",
            String::from_utf8_lossy(&body)
        );
        answer["content_uri"]
            .as_str()
            .unwrap_or_else(|| panic!("upload answer lacks content_uri: {answer}"))
            .to_owned()
    }

    /// Authenticated download of `mxc://server/media_id`
    /// (`/_matrix/client/v1/media/download/…`): status and bytes.
    pub async fn download_media(&self, mxc: &str) -> (u16, Vec<u8>) {
        let rest = mxc
            .strip_prefix("mxc://")
            .unwrap_or_else(|| panic!("not an mxc URI: {mxc}"));
        let (server, media_id) = rest
            .split_once('/')
            .unwrap_or_else(|| panic!("not an mxc URI: {mxc}"));
        let path = format!(
            "/_matrix/client/v1/media/download/{}/{}",
            encode(server),
            encode(media_id)
        );
        let (status, _, body) = self
            .request_bytes(Method::GET, &path, None, Vec::new())
            .await;
        (status, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode("!abc:localhost"), "%21abc%3Alocalhost");
        assert_eq!(encode("#room:localhost"), "%23room%3Alocalhost");
        assert_eq!(encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(encode("é/ "), "%C3%A9%2F%20");
    }

    #[test]
    fn megolm_content_is_well_formed() {
        let c = megolm_content("KEY", "DEV");
        assert_eq!(c["algorithm"], MEGOLM_ALGORITHM);
        assert!(c["ciphertext"].as_str().unwrap().len() > 100);
        assert_eq!(c["device_id"], "DEV");
    }
}
