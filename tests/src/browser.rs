//! What a web browser does in a single sign-on flow, minus the pages: it
//! keeps cookies and follows redirects, hop by hop, so a test can see each
//! `Location` and stop just before the one it wants to take itself (a
//! client's `redirectUrl` with its `loginToken`, a relying party's callback
//! with `code` and `state`).
//!
//! It runs no JavaScript and submits no forms by itself; an auto-submitting
//! form (oidc-provider's when one browser switches accounts) is a `200`
//! [`Page`] whose form a test may post with [`Browser::post_form`].

use std::sync::Arc;
use std::time::Duration;

use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{HeaderMap, LOCATION};
use reqwest::{redirect, Url};

/// How many redirects [`Browser::follow`] takes before it gives up.
pub const MAX_HOPS: usize = 20;

/// One browser profile: its own cookie jar, redirects not followed by
/// reqwest but by [`Browser::follow`].
pub struct Browser {
    http: reqwest::Client,
    jar: Arc<Jar>,
}

/// Where a request (or a chain of redirects) ended.
#[derive(Debug)]
pub struct Page {
    /// The last response's status; 0 when [`Browser::follow`] stopped before
    /// requesting `url`.
    pub status: u16,
    /// The URL of the last response, or the redirect target not requested.
    pub url: String,
    /// The last response's `Location`, resolved against `url`, if any.
    pub location: Option<String>,
    /// The redirect targets followed or stopped at, in order (resolved).
    pub hops: Vec<String>,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// Whether [`Browser::follow`] stopped at a redirect to its `stop_at`.
    pub fn stopped(&self) -> bool {
        self.status == 0
    }

    /// The first query parameter `name` of `url` (decoded), e.g. `code`.
    pub fn query(&self, name: &str) -> Option<String> {
        let url = Url::parse(&self.url).ok()?;
        let value = url
            .query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned());
        value
    }
}

impl Default for Browser {
    fn default() -> Self {
        Browser::new()
    }
}

impl Browser {
    /// A browser with no cookies yet.
    pub fn new() -> Browser {
        let jar = Arc::new(Jar::default());
        // What browsers send: the server shows people pages, apps errors.
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            reqwest::header::HeaderValue::from_static(
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            ),
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .cookie_provider(jar.clone())
            .redirect(redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build the browser's HTTP client");
        Browser { http, jar }
    }

    /// GETs `url` and follows each redirect with a GET, as browsers do
    /// after a 301, 302 or 303, up to [`MAX_HOPS`]. Stops before requesting
    /// a redirect target that starts with `stop_at` (a [`Page`] with status
    /// 0 and that target as `url`), or at the first response that is not a
    /// redirect (it is the page).
    pub async fn follow(&self, url: &str, stop_at: &str) -> Page {
        let mut hops = Vec::new();
        let mut page = self.get(url).await;
        while let Some(next) = page.location.clone() {
            hops.push(next.clone());
            if next.starts_with(stop_at) {
                return Page {
                    status: 0,
                    url: next,
                    location: None,
                    hops,
                    headers: HeaderMap::new(),
                    body: String::new(),
                };
            }
            assert!(
                hops.len() <= MAX_HOPS,
                "more than {MAX_HOPS} redirects from {url}: {hops:#?}"
            );
            page = self.get(&next).await;
        }
        page.hops = hops;
        page
    }

    /// One GET, redirects not followed.
    pub async fn get(&self, url: &str) -> Page {
        self.send(self.http.get(url), url).await
    }

    /// One POST of an HTML form (`application/x-www-form-urlencoded`),
    /// redirects not followed.
    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Page {
        self.send(self.http.post(url).form(form), url).await
    }

    /// The `Cookie` header this browser would send to `url`, if any.
    pub fn cookies(&self, url: &str) -> Option<String> {
        let url = Url::parse(url).expect("a valid URL");
        let header = self.jar.cookies(&url)?;
        Some(header.to_str().expect("cookies are ASCII").to_owned())
    }

    async fn send(&self, request: reqwest::RequestBuilder, url: &str) -> Page {
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {url}: {e}"));
        let status = response.status();
        let base = response.url().clone();
        let headers = response.headers().clone();
        let location = status
            .is_redirection()
            .then(|| headers.get(LOCATION))
            .flatten()
            .map(|value| {
                let value = value.to_str().expect("Location is ASCII");
                base.join(value)
                    .unwrap_or_else(|e| panic!("Location {value:?} from {url}: {e}"))
                    .to_string()
            });
        let body = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("read the body from {url}: {e}"));
        Page {
            status: status.as_u16(),
            url: base.to_string(),
            location,
            hops: Vec::new(),
            headers,
            body,
        }
    }
}
