//! An app signing in through Cloister's OAuth 2.0 API (MSC3861), and the
//! person's browser on Cloister's sign-in and consent pages, over plain
//! HTTP. The browser keeps the sign-in cookie by hand (reqwest's cookie
//! store keeps no `Secure` cookie over plain http) and reads each form's
//! CSRF token from the page, as a browser would submit it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::{redirect, Url};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// RFC 8628's grant type.
pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The stable scope for the API and a device.
pub fn scope(device_id: &str) -> String {
    format!("urn:matrix:client:api:* urn:matrix:client:device:{device_id}")
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = crate::unique("verifier-0123456789-0123456789-0123456789");
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .expect("build the HTTP client")
}

async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// A registered app.
pub struct App {
    pub base: String,
    pub client_id: String,
    pub redirect_uri: String,
    http: reqwest::Client,
}

impl App {
    /// Registers a web app at https://app.example.org.
    pub async fn register(base: &str) -> App {
        let redirect_uri = "https://app.example.org/callback";
        let metadata = json!({
            "client_name": "Example App",
            "client_uri": "https://app.example.org/",
            "redirect_uris": [redirect_uri],
            "application_type": "web",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        });
        App::register_with(base, &metadata, redirect_uri).await
    }

    /// Registers a native app that signs in with the device grant only
    /// (a TV app, or a phone signing in by QR code).
    pub async fn register_device_app(base: &str) -> App {
        let metadata = json!({
            "client_name": "Example TV",
            "client_uri": "https://app.example.org/",
            "application_type": "native",
            "grant_types": [DEVICE_GRANT, "refresh_token"],
            "token_endpoint_auth_method": "none",
        });
        App::register_with(base, &metadata, "").await
    }

    async fn register_with(base: &str, metadata: &Value, redirect_uri: &str) -> App {
        let (status, body) = App::try_register(base, metadata).await;
        assert_eq!(status, 201, "{body}");
        App {
            base: base.trim_end_matches('/').to_owned(),
            client_id: body["client_id"].as_str().expect("client_id").to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            http: http(),
        }
    }

    /// The device authorization request.
    pub async fn device_authorization(&self, scope: &str) -> (u16, Value) {
        let url = format!("{}/_cloister/oauth2/device", self.base);
        let form = [("client_id", self.client_id.as_str()), ("scope", scope)];
        answer(
            self.http
                .post(url)
                .form(&form)
                .send()
                .await
                .expect("device"),
        )
        .await
    }

    /// One poll of the token endpoint with a device code.
    pub async fn poll(&self, device_code: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", DEVICE_GRANT),
            ("device_code", device_code),
            ("client_id", &self.client_id),
        ])
        .await
    }

    pub async fn try_register(base: &str, metadata: &Value) -> (u16, Value) {
        let url = format!("{}/_cloister/oauth2/register", base.trim_end_matches('/'));
        answer(
            http()
                .post(url)
                .json(metadata)
                .send()
                .await
                .expect("register"),
        )
        .await
    }

    /// The authorization URL for `scope` with PKCE `challenge`.
    pub fn authorize_url(&self, challenge: &str, scope: &str, state: &str) -> String {
        let mut url = Url::parse(&format!("{}/_cloister/oauth2/authorize", self.base)).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", scope)
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        url.into()
    }

    /// A form POST to the token endpoint.
    pub async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let url = format!("{}/_cloister/oauth2/token", self.base);
        answer(self.http.post(url).form(form).send().await.expect("token")).await
    }

    pub async fn exchange(&self, code: &str, verifier: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.redirect_uri),
            ("client_id", &self.client_id),
            ("code_verifier", verifier),
        ])
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", &self.client_id),
        ])
        .await
    }

    pub async fn revoke(&self, token: &str) -> (u16, Value) {
        let url = format!("{}/_cloister/oauth2/revoke", self.base);
        let form = [("token", token), ("client_id", self.client_id.as_str())];
        answer(
            self.http
                .post(url)
                .form(&form)
                .send()
                .await
                .expect("revoke"),
        )
        .await
    }

    /// The whole browser step and the exchange: tokens for `user`'s new
    /// device `device_id`.
    pub async fn sign_in(&self, user: &str, password: &str, device_id: &str) -> Value {
        let (verifier, challenge) = pkce();
        let url = self.authorize_url(&challenge, &scope(device_id), "st");
        let back = Browser::new().sign_in_and_allow(&url, user, password).await;
        let code = query(&back, "code").expect("a code");
        let (status, tokens) = self.exchange(&code, &verifier).await;
        assert_eq!(status, 200, "{tokens}");
        tokens
    }
}

/// The first query (or fragment) parameter `name` of `url`.
pub fn query(url: &str, name: &str) -> Option<String> {
    let mut url = Url::parse(url).ok()?;
    if let Some(fragment) = url.fragment().map(str::to_owned) {
        url.set_query(Some(&fragment));
    }
    let value = url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned());
    value
}

/// One response as the browser saw it.
#[derive(Debug)]
pub struct Seen {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookie: Option<String>,
    pub csp: Option<String>,
    pub body: String,
}

impl Seen {
    /// The path of the sign-in page's link to provider `idp_id`.
    pub fn provider_link(&self, idp_id: &str) -> Option<String> {
        let at = self.body.find(&format!("/sso/{idp_id}?"))?;
        let start = self.body[..at].rfind("href=\"")? + "href=\"".len();
        let end = at + self.body[at..].find('"')?;
        Some(self.body[start..end].replace("&amp;", "&"))
    }

    /// The value of the page's hidden `csrf` field.
    pub fn csrf(&self) -> Option<String> {
        let at = self.body.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
        let end = self.body[at..].find('"')?;
        Some(self.body[at..at + end].to_owned())
    }
}

/// The person's browser: one sign-in cookie, redirects taken by the test.
pub struct Browser {
    http: reqwest::Client,
    pub cookie: Option<String>,
}

impl Default for Browser {
    fn default() -> Self {
        Browser::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            http: http(),
            cookie: None,
        }
    }

    async fn see(&mut self, request: reqwest::RequestBuilder, url: &str) -> Seen {
        let request = request.header("accept", "text/html,application/xhtml+xml");
        let request = match &self.cookie {
            Some(c) => request.header("cookie", c.as_str()),
            None => request,
        };
        let response = request.send().await.expect("the server answers");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().expect("ASCII").to_owned())
        };
        let location = header("location").map(|l| {
            Url::parse(url)
                .and_then(|base| base.join(&l))
                .map(String::from)
                .unwrap_or(l)
        });
        let set_cookie = header("set-cookie");
        if let Some(sc) = &set_cookie {
            self.cookie = sc.split(';').next().map(str::to_owned);
        }
        let csp = header("content-security-policy");
        Seen {
            status: response.status().as_u16(),
            location,
            set_cookie,
            csp,
            body: response.text().await.unwrap_or_default(),
        }
    }

    pub async fn get(&mut self, url: &str) -> Seen {
        let request = self.http.get(url);
        self.see(request, url).await
    }

    pub async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> Seen {
        let request = self.http.post(url).form(form);
        self.see(request, url).await
    }

    /// Opens the app's authorization URL and follows it to the grant's page.
    pub async fn open(&mut self, authorize_url: &str) -> (String, Seen) {
        let start = self.get(authorize_url).await;
        assert_eq!(start.status, 303, "{start:?}");
        let page_url = start.location.expect("on to the sign-in page");
        let page = self.get(&page_url).await;
        (page_url, page)
    }

    /// Signs in on the page at `page_url` and returns the consent page.
    pub async fn sign_in(
        &mut self,
        page_url: &str,
        page: &Seen,
        user: &str,
        password: &str,
    ) -> Seen {
        let csrf = page.csrf().expect("a sign-in form");
        let form = [
            ("csrf", csrf.as_str()),
            ("action", "sign_in"),
            ("username", user),
            ("password", password),
        ];
        let answer = self.post(page_url, &form).await;
        if answer.status != 303 {
            return answer;
        }
        let next = answer.location.expect("back to the page");
        self.get(&next).await
    }

    /// Consents (or not) and returns where the browser is sent.
    pub async fn decide(&mut self, page_url: &str, consent: &Seen, allow: bool) -> String {
        let csrf = consent.csrf().expect("a consent form");
        let action = if allow { "allow" } else { "deny" };
        let answer = self
            .post(page_url, &[("csrf", &csrf), ("action", action)])
            .await;
        assert_eq!(answer.status, 303, "{answer:?}");
        answer.location.expect("to the app")
    }

    /// Enters a device's user code on the link page (as typed: `typed`)
    /// and follows on to the sign-in page.
    pub async fn link(&mut self, base: &str, typed: &str) -> (String, Seen) {
        let url = format!("{}/_cloister/oauth2/link", base.trim_end_matches('/'));
        let form = self.get(&url).await;
        assert_eq!(form.status, 200, "{form:?}");
        let start = self.post(&url, &[("code", typed)]).await;
        if start.status != 303 {
            return (url, start);
        }
        let page_url = start.location.expect("on to the sign-in page");
        let page = self.get(&page_url).await;
        (page_url, page)
    }

    /// Consents (or not) to a device grant and returns the page shown.
    pub async fn decide_device(&mut self, page_url: &str, consent: &Seen, allow: bool) -> Seen {
        let csrf = consent.csrf().expect("a consent form");
        let action = if allow { "allow" } else { "deny" };
        self.post(page_url, &[("csrf", &csrf), ("action", action)])
            .await
    }

    /// Open, sign in, allow: the app's redirect URI with the code.
    pub async fn sign_in_and_allow(
        &mut self,
        authorize_url: &str,
        user: &str,
        password: &str,
    ) -> String {
        let (page_url, page) = self.open(authorize_url).await;
        let consent = self.sign_in(&page_url, &page, user, password).await;
        assert_eq!(consent.status, 200, "{consent:?}");
        self.decide(&page_url, &consent, true).await
    }
}
