//! Limits of the test servers, raw requests and error assertions.

use std::net::SocketAddr;
use std::time::Duration;

use cloister_tests::{encode, errcode, Client};
use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) const R: &str = "/_matrix/client/v3";
/// `limits.max_request_body` of the test servers here.
pub(crate) const MAX_BODY: usize = 100_000;
/// `limits.max_upload_size`: larger than `MAX_BODY`, since uploads are raw
/// bytes and not JSON bodies.
pub(crate) const MAX_UPLOAD: usize = 200_000;
pub(crate) const MAX_EVENT: usize = 65_536;

// ----- requests and assertions ---------------------------------------------

pub(crate) fn parse_body(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
    }
}

/// Sends `body` verbatim as `application/json`.
pub(crate) async fn raw(c: &Client, method: Method, path: &str, body: &[u8]) -> (u16, Value) {
    let (s, _, bytes) = c
        .request_bytes(method, path, Some("application/json"), body.to_vec())
        .await;
    (s, parse_body(&bytes))
}

/// A request with exactly the given headers (no access token of a client).
pub(crate) async fn with_headers(
    base: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{base}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    (status, parse_body(&response.bytes().await.unwrap()))
}

/// Asserts a Matrix error: the status, the errcode and a string `error`.
#[track_caller]
pub(crate) fn expect_error(got: (u16, Value), status: u16, code: &str, what: &str) {
    let (s, body) = got;
    assert_eq!(
        (s, errcode(&body)),
        (status, Some(code)),
        "{what}: expected {status} {code}, got {s} {body}"
    );
    assert!(
        body["error"].is_string(),
        "{what}: the error has no message: {body}"
    );
}

/// A raw HTTP/1.1 exchange over TCP, for requests `reqwest` would not send
/// as written (dot segments, chunked uploads). Returns status and body.
pub(crate) async fn raw_http(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the server");
    // The server may answer (and close) before it has read everything.
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&answer)));
    let head = String::from_utf8_lossy(&answer[..split]).to_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let mut rest = &answer[split + 4..];
    let body = if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..line_end])
                    .split(';')
                    .next()
                    .unwrap_or("0")
                    .trim(),
                16,
            )
            .unwrap_or(0);
            if size == 0 {
                break;
            }
            rest = &rest[line_end + 2..];
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        out
    } else {
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(rest.len());
        rest[..length.min(rest.len())].to_vec()
    };
    (status, body)
}

/// `Transfer-Encoding: chunked` encoding of `data` in 1000-byte chunks.
pub(crate) fn chunked(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in data.chunks(1000) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

pub(crate) fn send_path(room: &str, event_type: &str, txn: &str) -> String {
    format!(
        "{R}/rooms/{}/send/{}/{}",
        encode(room),
        encode(event_type),
        encode(txn)
    )
}
