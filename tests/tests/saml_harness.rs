//! Smoke test of the SAML identity provider harness (`cloister_tests::saml`)
//! with no Cloister in the loop: a hand-made AuthnRequest goes to the IdP
//! over the HTTP-Redirect binding, the POST-binding page comes back, and
//! the Response in it is checked field by field and, in every mode, against
//! the reference implementation of XML signatures, `xmlsec1 --verify`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use cloister_tests::browser::Browser;
use cloister_tests::saml::{PostForm, SamlIdp, EVIL_NAME_ID, EVIL_UID, MODES, OTHER_SP_ENTITY_ID};
use reqwest::Url;
use serde_json::json;

const PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
const BASIC: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic";
const URI: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri";
const UID_OID: &str = "urn:oid:0.9.2342.19200300.100.1.1";

/// `xmlsec1 --node-xpath` for the Response's own signature.
const RESPONSE_SIGNATURE: &str = "/*[local-name()='Response']/*[local-name()='Signature']";
/// … and for the signature of the (first signed) assertion of the Response.
const ASSERTION_SIGNATURE: &str =
    "/*[local-name()='Response']/*[local-name()='Assertion']/*[local-name()='Signature']";

type Received = Arc<Mutex<Vec<Vec<(String, String)>>>>;

/// A stand-in service provider: its ACS records the forms posted to it.
/// Returns its entity ID, its ACS URL and what it received.
async fn service_provider() -> (String, String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route(
            "/saml/acs",
            post(
                |State(received): State<Received>, body: String| async move {
                    let url = Url::parse(&format!("http://form/?{body}")).unwrap();
                    let fields = url.query_pairs().map(|(k, v)| (k.into(), v.into()));
                    received.lock().unwrap().push(fields.collect());
                    "signed in"
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (
        format!("{url}/saml/metadata"),
        format!("{url}/saml/acs?from=idp&x=1"),
        received,
    )
}

/// Now, as SAML writes it: `2026-01-02T03:04:05Z`.
fn instant(offset_seconds: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t = now + offset_seconds;
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Raw DEFLATE (RFC 1951) in stored blocks: valid for any inflater, and no
/// compression crate needed.
fn deflate_stored(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 5 * (data.len() / 65_535 + 1));
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![&[]]
    } else {
        data.chunks(65_535).collect()
    };
    for (i, chunk) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len())); // BFINAL, BTYPE 00
        let len = u16::try_from(chunk.len()).unwrap();
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn xml_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The sso URL for a minimal AuthnRequest `id` from `sp` for `acs`.
fn authn_request_url(idp: &SamlIdp, id: &str, sp: &str, acs: &str, relay_state: &str) -> String {
    let request = format!(
        r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{}" Destination="{}" AssertionConsumerServiceURL="{}" ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"><saml:Issuer>{}</saml:Issuer><samlp:NameIDPolicy Format="{PERSISTENT}" AllowCreate="true"/></samlp:AuthnRequest>"#,
        instant(0),
        xml_escape(&idp.sso_url()),
        xml_escape(acs),
        xml_escape(sp),
    );
    let encoded = STANDARD.encode(deflate_stored(request.as_bytes()));
    Url::parse_with_params(
        &idp.sso_url(),
        &[
            ("SAMLRequest", encoded.as_str()),
            ("RelayState", relay_state),
        ],
    )
    .unwrap()
    .to_string()
}

/// The elements named `local` (any prefix), in document order: their open
/// tag and their content (for leaf elements, the escaped text).
fn elements<'a>(xml: &'a str, local: &str) -> Vec<(&'a str, &'a str)> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(i) = xml[at..].find('<') {
        let start = at + i + 1;
        at = start;
        let name_end = xml[start..]
            .find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
            .map_or(xml.len(), |j| start + j);
        let name = &xml[start..name_end];
        if name.is_empty() || name.rsplit(':').next() != Some(local) {
            continue;
        }
        let open_end = start + xml[start..].find('>').unwrap();
        let open = &xml[start..open_end];
        if open.ends_with('/') {
            found.push((open, ""));
            continue;
        }
        let close = format!("</{name}>");
        let content_end = open_end + xml[open_end..].find(&close).unwrap();
        found.push((open, &xml[open_end + 1..content_end]));
    }
    found
}

/// The unescaped texts of the elements named `local`.
fn texts(xml: &str, local: &str) -> Vec<String> {
    elements(xml, local)
        .into_iter()
        .map(|(_, text)| xml_unescape(text))
        .collect()
}

/// The (unescaped) values of attribute `attr` of the elements `local`.
fn attrs(xml: &str, local: &str, attr: &str) -> Vec<String> {
    elements(xml, local)
        .into_iter()
        .filter_map(|(open, _)| attr_of(open, attr))
        .collect()
}

/// The (unescaped) value of attribute `attr` in an open tag.
fn attr_of(open: &str, attr: &str) -> Option<String> {
    let key = format!(" {attr}=\"");
    let start = open.find(&key)? + key.len();
    let end = start + open[start..].find('"')?;
    Some(xml_unescape(&open[start..end]))
}

/// Each `Attribute`: its Name, its NameFormat and its values.
fn attributes(xml: &str) -> Vec<(String, String, Vec<String>)> {
    elements(xml, "Attribute")
        .into_iter()
        .map(|(open, content)| {
            (
                attr_of(open, "Name").unwrap_or_default(),
                attr_of(open, "NameFormat").unwrap_or_default(),
                texts(content, "AttributeValue"),
            )
        })
        .collect()
}

/// `xmlsec1 --verify` of `xml` with the IdP's certificate, SAML's `ID`
/// attributes declared, checking the signature at `node_xpath` (the first
/// `ds:Signature` in document order when `None`). Err: xmlsec1's output.
fn xmlsec1_verify(
    dir: &Path,
    xml: &str,
    cert: &Path,
    node_xpath: Option<&str>,
) -> Result<(), String> {
    let file = dir.join(format!("response-{:08x}.xml", rand::random::<u32>()));
    std::fs::write(&file, xml).unwrap();
    let mut command = std::process::Command::new("xmlsec1");
    command
        .arg("--verify")
        .arg("--pubkey-cert-pem")
        .arg(cert)
        .args([
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
        ])
        .args([
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:protocol:Response",
        ]);
    if let Some(xpath) = node_xpath {
        command.args(["--node-xpath", xpath]);
    }
    let out = command
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("run xmlsec1 (apt-get install xmlsec1): {e}"));
    let output = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() && output.contains("\nOK\n") {
        Ok(())
    } else {
        Err(output)
    }
}

/// Runs one sign-in at `idp` with the browser, returning the page's form
/// and the request ID it answers.
async fn sign_in(
    idp: &SamlIdp,
    browser: &Browser,
    sp: &str,
    acs: &str,
    relay_state: &str,
) -> (PostForm, String) {
    let id = format!("_req-{:016x}", rand::random::<u64>());
    let page = browser
        .get(&authn_request_url(idp, &id, sp, acs, relay_state))
        .await;
    assert_eq!(page.status, 200, "{}\n{}", page.body, idp.log());
    let form =
        PostForm::from_html(&page.body).unwrap_or_else(|| panic!("no form in\n{}", page.body));
    (form, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_answers_an_authn_request_with_a_signed_response() {
    let (sp, acs, received) = service_provider().await;
    let started = std::time::Instant::now();
    let idp = SamlIdp::start(&sp, &acs).await;
    eprintln!("SamlIdp::start took {:?}", started.elapsed());
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("idp.pem");
    std::fs::write(&cert, idp.certificate_pem()).unwrap();
    let browser = Browser::new();

    // Its metadata: the entityID, the SSO endpoint and the certificate.
    let metadata = reqwest::get(idp.entity_id())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metadata.contains(&format!("entityID=\"{}\"", idp.entity_id())));
    assert!(metadata.contains(&format!("Location=\"{}\"", idp.sso_url())));
    let cert_body: String = idp
        .certificate_pem()
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    assert!(metadata.contains(&cert_body), "{metadata}");

    // No one signs in yet: a signed Response saying so, without assertion.
    let (form, id) = sign_in(&idp, &browser, &sp, &acs, "").await;
    let xml = form.saml_response().unwrap();
    assert_eq!(form.field("RelayState"), None);
    assert_eq!(attrs(&xml, "Response", "InResponseTo"), [id.as_str()]);
    assert_eq!(
        attrs(&xml, "StatusCode", "Value"),
        [
            "urn:oasis:names:tc:SAML:2.0:status:Responder",
            "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"
        ]
    );
    assert!(elements(&xml, "Assertion").is_empty(), "{xml}");
    xmlsec1_verify(dir.path(), &xml, &cert, None).unwrap();

    // Requests it must not answer: from another SP, or for another ACS.
    for (issuer, acs_url, why) in [
        (OTHER_SP_ENTITY_ID, acs.as_str(), "unknown service provider"),
        (
            sp.as_str(),
            "http://127.0.0.1:1/evil/acs",
            "AssertionConsumerServiceURL",
        ),
    ] {
        let url = authn_request_url(&idp, "_bad", issuer, acs_url, "");
        let page = browser.get(&url).await;
        assert_eq!(page.status, 400, "{}", page.body);
        assert!(page.body.contains(why), "{}", page.body);
    }

    // Alice signs in.
    idp.sign_in_as(
        "alice-7f3a",
        json!({
            "uid": ["alice"],
            "displayName": ["Alice <L> & Co"],
            "mail": ["alice@example.org", "a.l@example.org"],
            UID_OID: "alice",
        }),
    )
    .await;
    let relay_state = "state=1&x=<\"'>";
    let (form, id) = sign_in(&idp, &browser, &sp, &acs, relay_state).await;
    assert_eq!(form.action, acs);
    assert_eq!(form.field("RelayState"), Some(relay_state));
    let xml = form.saml_response().expect("a SAMLResponse");
    assert_eq!(idp.last_response().await, xml);

    assert_eq!(attrs(&xml, "Response", "InResponseTo"), [id.as_str()]);
    assert_eq!(attrs(&xml, "Response", "Destination"), [acs.as_str()]);
    assert_eq!(texts(&xml, "Issuer"), [idp.entity_id(), idp.entity_id()]);
    assert_eq!(
        attrs(&xml, "StatusCode", "Value"),
        ["urn:oasis:names:tc:SAML:2.0:status:Success"]
    );
    assert_eq!(texts(&xml, "Audience"), [sp.as_str()]);
    assert_eq!(texts(&xml, "NameID"), ["alice-7f3a"]);
    assert_eq!(attrs(&xml, "NameID", "Format"), [PERSISTENT]);
    assert_eq!(attrs(&xml, "NameID", "NameQualifier"), [idp.entity_id()]);
    assert_eq!(attrs(&xml, "NameID", "SPNameQualifier"), [sp.as_str()]);
    assert_eq!(
        attrs(&xml, "SubjectConfirmation", "Method"),
        ["urn:oasis:names:tc:SAML:2.0:cm:bearer"]
    );
    assert_eq!(
        attrs(&xml, "SubjectConfirmationData", "InResponseTo"),
        [id.as_str()]
    );
    assert_eq!(
        attrs(&xml, "SubjectConfirmationData", "Recipient"),
        [acs.as_str()]
    );
    // Each attribute as given (in the order of the JSON object sent, which
    // serde_json sorts), values in order.
    let mut attributes = attributes(&xml);
    attributes.sort();
    assert_eq!(
        attributes,
        [
            ("displayName", BASIC, vec!["Alice <L> & Co"]),
            ("mail", BASIC, vec!["alice@example.org", "a.l@example.org"]),
            ("uid", BASIC, vec!["alice"]),
            (UID_OID, URI, vec!["alice"]),
        ]
        .map(|(name, format, values)| (
            name.to_owned(),
            format.to_owned(),
            values.into_iter().map(str::to_owned).collect::<Vec<_>>()
        ))
    );
    let now = instant(0);
    let (not_before, not_on_or_after) = (
        attrs(&xml, "Conditions", "NotBefore"),
        attrs(&xml, "Conditions", "NotOnOrAfter"),
    );
    assert!(not_before[0] <= now && now < not_on_or_after[0], "{xml}");
    // Both signatures, each verified on its own.
    assert_eq!(attrs(&xml, "Signature", "Id"), ["Signature1", "Signature2"]);
    for xpath in [None, Some(RESPONSE_SIGNATURE), Some(ASSERTION_SIGNATURE)] {
        xmlsec1_verify(dir.path(), &xml, &cert, xpath).unwrap();
    }

    // The browser posts the form to the SP's ACS, as the page's script would.
    let page = form.submit(&browser).await;
    assert_eq!((page.status, page.body.as_str()), (200, "signed in"));
    let posted = received.lock().unwrap().pop().unwrap();
    assert_eq!(posted, form.fields);

    // IdP-initiated: no InResponseTo anywhere, signed as ever.
    let form = idp.unsolicited(Some("/welcome")).await;
    assert_eq!(form.action, acs);
    assert_eq!(form.field("RelayState"), Some("/welcome"));
    let xml = form.saml_response().unwrap();
    assert_eq!(idp.last_response().await, xml);
    assert!(!xml.contains("InResponseTo"), "{xml}");
    assert_eq!(texts(&xml, "NameID"), ["alice-7f3a"]);
    for xpath in [RESPONSE_SIGNATURE, ASSERTION_SIGNATURE] {
        xmlsec1_verify(dir.path(), &xml, &cert, Some(xpath)).unwrap();
    }
    let form = idp.unsolicited(None).await;
    assert_eq!(form.field("RelayState"), None);
    form.submit(&browser).await;
    assert_eq!(received.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mode_verifies_with_xmlsec1_or_not_as_documented() {
    let (sp, acs, _) = service_provider().await;
    let idp = SamlIdp::start(&sp, &acs).await;
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("idp.pem");
    std::fs::write(&cert, idp.certificate_pem()).unwrap();
    let browser = Browser::new();
    idp.sign_in_as(
        "alice-7f3a",
        json!({ "uid": ["alice"], "displayName": ["Alice L"], UID_OID: ["alice"] }),
    )
    .await;
    let verify = |xml: &str, xpath: Option<&str>| xmlsec1_verify(dir.path(), xml, &cert, xpath);

    for mode in MODES {
        idp.set_mode(mode).await;
        let (form, id) = sign_in(&idp, &browser, &sp, &acs, "rs").await;
        let xml = form.saml_response().unwrap();
        assert_eq!(idp.last_response().await, xml, "{mode}");
        let context = format!("mode {mode}:\n{xml}");
        assert_eq!(
            attrs(&xml, "Response", "InResponseTo"),
            [id.as_str()],
            "{context}"
        );
        let signatures = elements(&xml, "Signature").len();
        let name_ids = texts(&xml, "NameID");
        let assertion_ids = attrs(&xml, "Assertion", "ID");
        let first = verify(&xml, None);
        let response = verify(&xml, Some(RESPONSE_SIGNATURE));
        let assertion = verify(&xml, Some(ASSERTION_SIGNATURE));
        let (first, response, assertion) = (first.as_ref(), response.as_ref(), assertion.as_ref());
        let digest_fails = |result: Result<&(), &String>| {
            let error = result.expect_err(mode);
            assert!(error.contains("data and digest do not match"), "{error}");
        };
        match mode {
            "valid" | "wrong_audience" | "expired" => {
                assert_eq!(signatures, 2, "{context}");
                first.expect(mode);
                response.expect(mode);
                assertion.expect(mode);
                assert_eq!(name_ids, ["alice-7f3a"], "{context}");
            }
            "assertion_signed" => {
                assert_eq!(signatures, 1, "{context}");
                first.expect(mode);
                assertion.expect(mode);
                assert!(response.is_err(), "{context}");
            }
            "response_signed" => {
                assert_eq!(signatures, 1, "{context}");
                first.expect(mode);
                response.expect(mode);
                assert!(assertion.is_err(), "{context}");
            }
            "unsigned" => {
                assert_eq!(signatures, 0, "{context}");
                assert!(first.is_err(), "{context}");
            }
            "tampered" => {
                assert_eq!(signatures, 2, "{context}");
                assert_eq!(name_ids, [EVIL_NAME_ID], "{context}");
                digest_fails(first);
                digest_fails(response);
                digest_fails(assertion);
            }
            _ => {
                // XML Signature Wrapping: the legitimate assertion with its
                // one signature, and the evil one, unsigned.
                assert!(mode.starts_with("xsw_"), "no expectations for {mode}");
                assert_eq!(signatures, 1, "{context}");
                assert_eq!(assertion_ids.len(), 2, "{context}");
                let values = texts(&xml, "AttributeValue");
                assert!(values.iter().any(|v| v == "alice"), "{context}");
                assert!(values.iter().any(|v| v == EVIL_UID), "{context}");
                assert!(values.iter().any(|v| v == "Evil Admin"), "{context}");
            }
        }
        match mode {
            "wrong_audience" => {
                assert_eq!(texts(&xml, "Audience"), [OTHER_SP_ENTITY_ID], "{context}");
                assert_eq!(attrs(&xml, "Response", "Destination"), [acs.as_str()]);
            }
            "expired" => {
                let (before, after) = (instant(-2 * 3600 - 60), instant(-2 * 3600 + 60));
                for at in attrs(&xml, "Conditions", "NotBefore")
                    .into_iter()
                    .chain(attrs(&xml, "Response", "IssueInstant"))
                    .chain(attrs(&xml, "Assertion", "IssueInstant"))
                {
                    assert!(before <= at && at <= after, "{at}: {context}");
                }
                let (before, after) = (instant(-3600 - 60), instant(-3600 + 60));
                for at in attrs(&xml, "Conditions", "NotOnOrAfter")
                    .into_iter()
                    .chain(attrs(&xml, "SubjectConfirmationData", "NotOnOrAfter"))
                {
                    assert!(before <= at && at <= after, "{at}: {context}");
                }
            }
            "xsw_sibling" => {
                // Response/[Assertion E, Assertion A]. Verified by the first
                // signature in the document, the signed assertion's: that is
                // what makes it dangerous.
                assert_eq!(name_ids, [EVIL_NAME_ID, "alice-7f3a"], "{context}");
                assert_ne!(assertion_ids[0], assertion_ids[1], "{context}");
                first.expect(mode);
                assertion.expect(mode);
            }
            "xsw_same_id" => {
                assert_eq!(name_ids, [EVIL_NAME_ID, "alice-7f3a"], "{context}");
                assert_eq!(assertion_ids[0], assertion_ids[1], "{context}");
                let error = first.expect_err(mode);
                assert!(error.contains("duplicate ID attribute"), "{error}");
            }
            "xsw_wrapped" => {
                // Response/Assertion E/Advice/Assertion A.
                assert_eq!(name_ids, [EVIL_NAME_ID, "alice-7f3a"], "{context}");
                assert_eq!(elements(&xml, "Advice").len(), 1, "{context}");
                first.expect(mode);
                // The Response's own Assertion child is the evil, unsigned one.
                assert!(assertion.is_err(), "{context}");
            }
            "xsw_extensions" => {
                // Response/Extensions/Assertion A, then Response/Assertion E.
                assert_eq!(name_ids, ["alice-7f3a", EVIL_NAME_ID], "{context}");
                assert_eq!(elements(&xml, "Extensions").len(), 1, "{context}");
                first.expect(mode);
            }
            "xsw_signature_object" => {
                // Response/Assertion E/Signature/Object/Assertion A.
                assert_eq!(name_ids, ["alice-7f3a", EVIL_NAME_ID], "{context}");
                assert_eq!(elements(&xml, "Object").len(), 1, "{context}");
                digest_fails(first);
            }
            _ => {}
        }
    }
}
