//! The web console's API as its page uses it: a session cookie set at
//! sign-in, sent back by hand (reqwest's cookie store keeps no `Secure`
//! cookie over plain http), and the session's CSRF token on every change.
//! Like [`crate::Client`], the calls return `(status, body)` and never
//! panic on an error status.

use std::time::Duration;

use reqwest::header::{HeaderMap, COOKIE, SET_COOKIE};
use reqwest::Method;
use serde_json::{json, Value};

pub use cloister_server::service::staff::Role;

use crate::TestServer;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "__Host-cloister_console";
/// Where the console's API lives; the helpers take paths below it.
pub const API: &str = "/_cloister/console/api";

/// `body` parsed as JSON; `Null` when empty, a string when not JSON.
pub fn json_body(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
    }
}

/// The value `name=value; …` of a `Set-Cookie` header sets.
pub fn cookie_value(set_cookie: &str) -> Option<&str> {
    let (pair, _) = set_cookie.split_once(';').unwrap_or((set_cookie, ""));
    let (name, value) = pair.trim().split_once('=')?;
    (name == COOKIE_NAME).then_some(value)
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("build the HTTP client")
}

/// What `POST …/session` answered: status, its `Set-Cookie` header (if
/// any) and body.
#[derive(Debug)]
pub struct SignInAnswer {
    pub status: u16,
    pub set_cookie: Option<String>,
    pub body: Value,
}

/// Creates an account from the shell (no registration needed) and grants
/// it `roles`; returns its user id.
pub async fn create_staff(
    server: &TestServer,
    localpart: &str,
    password: &str,
    roles: &[Role],
) -> String {
    use cloister_server::service::staff;
    let user_id = staff::create_account(
        server.state(),
        staff::By::Shell,
        localpart,
        password.to_owned().into(),
        false,
    )
    .await
    .unwrap_or_else(|e| panic!("creating {localpart:?}: {e:?}"));
    for role in roles {
        staff::grant_role(server.state(), &user_id, *role)
            .await
            .unwrap_or_else(|e| panic!("granting {role:?} to {user_id}: {e:?}"));
    }
    user_id
}

/// A signed-in console session.
pub struct Console {
    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub base_url: String,
    /// The cookie's value.
    pub cookie: String,
    pub csrf_token: String,
    /// The sign-in answer: `user_id`, `roles`, `csrf_token`, ….
    pub session: Value,
    http: reqwest::Client,
}

impl Console {
    /// `POST /_cloister/console/api/session` with `{"user", "password"}`.
    pub async fn try_sign_in(server_url: &str, user: &str, password: &str) -> SignInAnswer {
        Self::try_sign_in_with(server_url, json!({ "user": user, "password": password })).await
    }

    /// `POST /_cloister/console/api/session` with `body` (a password, or
    /// `{"login_token"}` after single sign-on).
    pub async fn try_sign_in_with(server_url: &str, body: Value) -> SignInAnswer {
        let response = http_client()
            .post(format!("{server_url}{API}/session"))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {API}/session: no answer: {e}"));
        let status = response.status().as_u16();
        let set_cookie = response
            .headers()
            .get(SET_COOKIE)
            .map(|v| v.to_str().expect("Set-Cookie is ASCII").to_owned());
        let body = json_body(&response.bytes().await.expect("read the answer"));
        SignInAnswer {
            status,
            set_cookie,
            body,
        }
    }

    /// Signs in; panics with the server's answer unless it sets a cookie.
    pub async fn sign_in(server_url: &str, user: &str, password: &str) -> Console {
        Self::sign_in_with(server_url, json!({ "user": user, "password": password })).await
    }

    /// Signs in with `body`; panics with the answer unless it sets a cookie.
    pub async fn sign_in_with(server_url: &str, body: Value) -> Console {
        let answer = Self::try_sign_in_with(server_url, body).await;
        assert_eq!(answer.status, 200, "console sign-in: {answer:?}");
        let set_cookie = answer
            .set_cookie
            .as_deref()
            .unwrap_or_else(|| panic!("sign-in set no cookie: {answer:?}"));
        let cookie = cookie_value(set_cookie)
            .unwrap_or_else(|| panic!("not the console cookie: {set_cookie}"))
            .to_owned();
        Console {
            base_url: server_url.trim_end_matches('/').to_owned(),
            cookie,
            csrf_token: answer.body["csrf_token"]
                .as_str()
                .unwrap_or_else(|| panic!("no csrf_token: {}", answer.body))
                .to_owned(),
            session: answer.body,
            http: http_client(),
        }
    }

    /// The signed-in user id.
    pub fn user_id(&self) -> &str {
        self.session["user_id"].as_str().unwrap_or_default()
    }

    /// `Cookie: __Host-cloister_console=…`
    pub fn cookie_header(&self) -> String {
        format!("{COOKIE_NAME}={}", self.cookie)
    }

    /// Sends `method` to `API + path` with the cookie, `csrf` as
    /// `X-CSRF-Token` (none when `None`) and `body` as JSON (none when
    /// `Null`); the raw response.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        csrf: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{API}{path}", self.base_url))
            .header(COOKIE, self.cookie_header());
        if let Some(token) = csrf {
            request = request.header("X-CSRF-Token", token);
        }
        if !body.is_null() {
            request = request.json(body);
        }
        request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {API}{path}: no answer: {e}"))
    }

    /// Like [`send`](Self::send); status, headers and parsed body.
    pub async fn call_full(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        csrf: Option<&str>,
    ) -> (u16, HeaderMap, Value) {
        let response = self.send(method, path, body, csrf).await;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("read the answer");
        (status, headers, json_body(&bytes))
    }

    /// Like [`send`](Self::send); status and parsed body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        csrf: Option<&str>,
    ) -> (u16, Value) {
        let (status, _, body) = self.call_full(method, path, body, csrf).await;
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, &Value::Null, None).await
    }

    /// With the session's CSRF token.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, &body, Some(&self.csrf_token))
            .await
    }

    /// With the session's CSRF token.
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::PUT, path, &body, Some(&self.csrf_token))
            .await
    }

    /// With the session's CSRF token.
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, &Value::Null, Some(&self.csrf_token))
            .await
    }

    /// Like [`get`](Self::get), but panics unless 200; the body.
    pub async fn get_ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {API}{path} as {}: {body}", self.user_id());
        body
    }

    /// Like [`post`](Self::post), but panics unless 200; the body.
    pub async fn post_ok(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.post(path, body).await;
        assert_eq!(
            status,
            200,
            "POST {API}{path} as {}: {answer}",
            self.user_id()
        );
        answer
    }
}

/// The attributes of a Set-Cookie value (after the name=value), lower-cased.
pub fn cookie_attributes(set_cookie: &str) -> Vec<String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}
