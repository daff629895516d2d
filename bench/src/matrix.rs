//! The few Client-Server API calls the generator makes, over plain HTTP and
//! JSON, so it runs against any Matrix homeserver.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

/// Long enough for a loaded server; a request that takes longer counts as
/// an error rather than stalling the run.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request failed, in the terms the report counts.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// None when no HTTP answer came (connection refused, timeout).
    pub status: Option<u16>,
    pub errcode: Option<String>,
    pub retry_after_ms: Option<u64>,
    pub detail: String,
    /// The body of a 401: user-interactive auth puts its flows there.
    pub uia: Option<Value>,
}

impl Failure {
    /// A failure without an HTTP answer, or of an answer's shape.
    pub(crate) fn local(detail: &str) -> Failure {
        Failure {
            status: None,
            errcode: None,
            retry_after_ms: None,
            detail: detail.to_owned(),
            uia: None,
        }
    }

    pub(crate) fn is_rate_limited(&self) -> bool {
        self.status == Some(429)
    }

    /// A short label to count failures by: `429`, `500 M_UNKNOWN`, `timeout`.
    pub(crate) fn kind(&self) -> String {
        match (self.status, &self.errcode) {
            (Some(s), Some(code)) => format!("{s} {code}"),
            (Some(s), None) => s.to_string(),
            (None, _) => self.detail.clone(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.kind(), self.detail)
    }
}

impl std::error::Error for Failure {}

/// A signed-in device.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub device_id: String,
    pub access_token: String,
}

/// Percent-encodes one path segment or query value.
pub(crate) fn encode(text: &str) -> String {
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

/// One connection pool shared by every simulated user.
#[derive(Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    base: String,
}

impl Http {
    pub(crate) fn new(base_url: &str) -> anyhow::Result<Http> {
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Http {
            client,
            base: base_url.trim_end_matches('/').to_owned(),
        })
    }

    pub(crate) async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, Failure> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .timeout(timeout);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let no_answer = |e: reqwest::Error| {
            Failure::local(if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect"
            } else {
                "transport"
            })
        };
        let resp = req.send().await.map_err(no_answer)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(no_answer)?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        Err(Failure {
            status: Some(status),
            errcode: value
                .get("errcode")
                .and_then(Value::as_str)
                .map(str::to_owned),
            retry_after_ms: value.get("retry_after_ms").and_then(Value::as_u64),
            detail: value
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect(),
            uia: (status == 401).then_some(value),
        })
    }

    /// Registers through user-interactive auth: the first answer lists the
    /// flows; the first flow made only of `m.login.dummy` and (with a token)
    /// `m.login.registration_token` is completed stage by stage.
    pub(crate) async fn register(
        &self,
        localpart: &str,
        password: &str,
        token: Option<&str>,
    ) -> Result<Session, Failure> {
        let path = "/_matrix/client/v3/register";
        let mut body = json!({
            "username": localpart,
            "password": password,
            "initial_device_display_name": "cloister-bench",
        });
        let answer = match self.post(path, None, &body).await {
            Ok(answer) => return Self::session_of(&answer),
            Err(f) if f.status == Some(401) => f.uia.clone().unwrap_or(Value::Null),
            Err(f) => return Err(f),
        };
        let session = answer.get("session").and_then(Value::as_str);
        let usable = |stage: &str| {
            stage == "m.login.dummy" || (stage == "m.login.registration_token" && token.is_some())
        };
        let stages: Vec<String> = answer
            .get("flows")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|f| f.get("stages").and_then(Value::as_array))
            .map(|s| s.iter().filter_map(Value::as_str).collect::<Vec<_>>())
            .find(|s| !s.is_empty() && s.iter().all(|st| usable(st)))
            .ok_or_else(|| {
                Failure::local("no registration flow with only m.login.dummy or a token")
            })?
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut last = None;
        for stage in stages.iter().take(5) {
            let mut auth = json!({ "type": stage, "session": session });
            if stage == "m.login.registration_token" {
                auth["token"] = json!(token);
            }
            body["auth"] = auth;
            match self.post(path, None, &body).await {
                Ok(answer) => return Self::session_of(&answer),
                // 401 after a stage: that stage is done, the next one follows.
                Err(f) if f.status == Some(401) => last = Some(f),
                Err(f) => return Err(f),
            }
        }
        Err(last.unwrap_or_else(|| Failure::local("registration flow did not complete")))
    }

    pub(crate) async fn login(&self, localpart: &str, password: &str) -> Result<Session, Failure> {
        let body = json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": localpart },
            "password": password,
            "initial_device_display_name": "cloister-bench",
        });
        let answer = self.post("/_matrix/client/v3/login", None, &body).await?;
        Self::session_of(&answer)
    }

    fn session_of(answer: &Value) -> Result<Session, Failure> {
        let field = |name: &str| answer.get(name).and_then(Value::as_str).map(str::to_owned);
        match (field("user_id"), field("device_id"), field("access_token")) {
            (Some(_), Some(device_id), Some(access_token)) => Ok(Session {
                device_id,
                access_token,
            }),
            _ => Err(Failure::local(
                "answer lacks user_id, device_id or access_token",
            )),
        }
    }

    async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Result<Value, Failure> {
        self.request(Method::POST, path, token, Some(body), REQUEST_TIMEOUT)
            .await
    }

    /// A public room whose `m.room.encryption` is set from the start, so
    /// every server treats it the same way Cloister treats every room.
    pub(crate) async fn create_room(&self, s: &Session, name: &str) -> Result<String, Failure> {
        let body = json!({
            "preset": "public_chat",
            "name": name,
            "initial_state": [{
                "type": "m.room.encryption",
                "state_key": "",
                "content": { "algorithm": crate::payload::MEGOLM },
            }],
        });
        let answer = self
            .post(
                "/_matrix/client/v3/createRoom",
                Some(&s.access_token),
                &body,
            )
            .await?;
        answer
            .get("room_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| Failure::local("createRoom answer lacks room_id"))
    }

    pub(crate) async fn join(&self, s: &Session, room_id: &str) -> Result<(), Failure> {
        let path = format!("/_matrix/client/v3/rooms/{}/join", encode(room_id));
        self.post(&path, Some(&s.access_token), &json!({}))
            .await
            .map(drop)
    }

    pub(crate) async fn send_encrypted(
        &self,
        s: &Session,
        room_id: &str,
        txn_id: &str,
        content: &Value,
    ) -> Result<Value, Failure> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.encrypted/{}",
            encode(room_id),
            encode(txn_id)
        );
        self.request(
            Method::PUT,
            &path,
            Some(&s.access_token),
            Some(content),
            REQUEST_TIMEOUT,
        )
        .await
    }

    pub(crate) async fn sync(
        &self,
        s: &Session,
        since: Option<&str>,
        timeout_ms: u64,
        filter: &str,
    ) -> Result<Value, Failure> {
        let path = format!(
            "/_matrix/client/v3/sync?timeout={timeout_ms}&filter={}",
            encode(filter)
        );
        self.long_poll(s, path, since.map(|t| ("since", t)), timeout_ms, None)
            .await
    }

    /// Simplified sliding sync (MSC4186); without `pos` a new connection.
    pub(crate) async fn sliding_sync(
        &self,
        s: &Session,
        pos: Option<&str>,
        timeout_ms: u64,
        body: &Value,
    ) -> Result<Value, Failure> {
        let path = format!(
            "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync?timeout={timeout_ms}"
        );
        self.long_poll(s, path, pos.map(|p| ("pos", p)), timeout_ms, Some(body))
            .await
    }

    /// A sync request: `path` with its query so far, plus the token to
    /// continue from; POST with a body, GET without. It may take the
    /// long-poll's timeout on top of the usual one.
    async fn long_poll(
        &self,
        s: &Session,
        mut path: String,
        token: Option<(&str, &str)>,
        timeout_ms: u64,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        if let Some((name, value)) = token {
            path.push_str(&format!("&{name}={}", encode(value)));
        }
        let method = if body.is_some() {
            Method::POST
        } else {
            Method::GET
        };
        let timeout = REQUEST_TIMEOUT + Duration::from_millis(timeout_ms);
        self.request(method, &path, Some(&s.access_token), body, timeout)
            .await
    }

    /// One page of a room's history backwards from `from`.
    pub(crate) async fn messages_before(
        &self,
        s: &Session,
        room_id: &str,
        from: &str,
        limit: u32,
    ) -> Result<Value, Failure> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit={limit}&from={}",
            encode(room_id),
            encode(from)
        );
        self.request(
            Method::GET,
            &path,
            Some(&s.access_token),
            None,
            REQUEST_TIMEOUT,
        )
        .await
    }
}

/// Runs `call` again after each 429 (waiting what the server asks, at most
/// 5 s a time) up to `attempts` times: setup must get through a server's
/// rate limits, which the measured phase only counts.
pub(crate) async fn retrying<T, F, Fut>(attempts: u32, mut call: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match call().await {
            Err(f) if tries < attempts && (f.is_rate_limited() || f.status.is_none()) => {
                let wait = f.retry_after_ms.unwrap_or(500).clamp(50, 5_000);
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(encode("!abc:localhost"), "%21abc%3Alocalhost");
        assert_eq!(encode("b1-42.x_~"), "b1-42.x_~");
        assert_eq!(encode("{\"a\":1}"), "%7B%22a%22%3A1%7D");
    }

    #[test]
    fn failures_are_labelled_by_status_and_errcode() {
        let f = Failure {
            status: Some(429),
            errcode: Some("M_LIMIT_EXCEEDED".into()),
            retry_after_ms: Some(100),
            ..Failure::local("")
        };
        assert!(f.is_rate_limited());
        assert_eq!(f.kind(), "429 M_LIMIT_EXCEEDED");
        assert_eq!(Failure::local("timeout").kind(), "timeout");
    }
}
