//! Reading a SAML 2.0 `<Response>` so that only what the identity provider
//! signed is believed.
//!
//! XML signatures are checked by `bergshamra` (pure Rust, RustCrypto) with
//! its hardened settings: only the configured certificates count (a key in
//! the document is ignored), duplicate IDs are refused, and every signed
//! reference must be the document, an ancestor or a sibling of its
//! signature. On top of that, the shapes signature-wrapping attacks need are
//! refused outright: exactly one `<Assertion>` in the whole document, as a
//! direct child of the `<Response>`, and covered by a valid signature of its
//! own or of that Response. Comments and processing instructions are
//! refused too: canonicalisation drops comments, so `alice<!---->.evil`
//! would verify as `alice.evil` while a naive reader saw `alice`.
//!
//! This module only reads; the caller checks issuer, audience, times,
//! recipient and `InResponseTo` against its own state.

use std::collections::HashSet;

use bergshamra::{DsigContext, KeysManager, VerifyResult};
use uppsala::{Document, NodeId, NodeKind};

pub const PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub const ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub const PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
pub const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";

/// What a signature may use: SHA-2 digests and RSA/ECDSA over them, and
/// only the transforms SAML needs. SHA-1 (collisions) and XPath/XSLT
/// transforms (a signed element rewritten into another) are refused before
/// any verification.
const SIGNATURE_METHODS: &[&str] = &[
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
];
const DIGEST_METHODS: &[&str] = &[
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
];
const TRANSFORMS: &[&str] = &[
    "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    "http://www.w3.org/2006/12/xml-c14n11",
];

/// Why a response was not believed; each is refused and audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not XML, not a Response, or carrying what SAML never needs.
    Malformed(&'static str),
    /// No signature at all.
    Unsigned,
    /// A signature that does not verify with the provider's certificates.
    BadSignature,
    /// A signature using SHA-1 or a transform SAML does not need.
    WeakAlgorithm,
    /// A shape only signature wrapping produces.
    Wrapped(&'static str),
}

/// A `<SubjectConfirmation>` with the bearer method.
#[derive(Debug, Default)]
pub struct Bearer {
    pub recipient: Option<String>,
    pub not_on_or_after: Option<String>,
    pub in_response_to: Option<String>,
}

#[derive(Debug)]
pub struct Attribute {
    pub name: String,
    pub friendly_name: Option<String>,
    pub values: Vec<String>,
}

/// What a verified response says, read only from signed elements.
#[derive(Debug, Default)]
pub struct Assertion {
    pub id: String,
    pub issuer: Option<String>,
    pub response_issuer: Option<String>,
    pub response_destination: Option<String>,
    pub response_in_response_to: Option<String>,
    pub status: Option<String>,
    pub name_id: Option<String>,
    pub name_id_format: Option<String>,
    pub bearers: Vec<Bearer>,
    pub not_before: Option<String>,
    pub not_on_or_after: Option<String>,
    pub audiences: Vec<String>,
    pub attributes: Vec<Attribute>,
}

impl Assertion {
    /// The first value of the attribute named `name` (its `Name`, or its
    /// `FriendlyName`).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        if name.is_empty() {
            return None;
        }
        self.attributes
            .iter()
            .find(|a| a.name == name || a.friendly_name.as_deref() == Some(name))
            .and_then(|a| a.values.first())
            .map(String::as_str)
    }
}

/// Parses and verifies `xml` against the provider's PEM `certificates`.
pub fn read(xml: &str, certificates: &[String]) -> Result<Assertion, Refusal> {
    let doc = uppsala::Parser::new()
        .with_forbid_dtd(true)
        .parse(xml)
        .map_err(|_| Refusal::Malformed("not well-formed XML"))?;
    refuse_comments(&doc)?;
    let root = doc
        .document_element()
        .ok_or(Refusal::Malformed("empty document"))?;
    if !is(&doc, root, PROTOCOL, "Response") {
        return Err(Refusal::Malformed("not a SAML Response"));
    }
    if !doc
        .get_elements_by_tag_name_ns(ASSERTION, "EncryptedAssertion")
        .is_empty()
    {
        return Err(Refusal::Malformed("encrypted assertions are not supported"));
    }
    let assertions = doc.get_elements_by_tag_name_ns(ASSERTION, "Assertion");
    let [assertion] = assertions.as_slice() else {
        return Err(if assertions.is_empty() {
            Refusal::Malformed("no assertion")
        } else {
            Refusal::Wrapped("more than one assertion")
        });
    };
    if doc.parent(*assertion) != Some(root) {
        return Err(Refusal::Wrapped(
            "the assertion is not a child of the response",
        ));
    }
    check_algorithms(&doc)?;
    let covered = signed_nodes(&doc, certificates)?;
    if !(covered.contains(assertion) || covered.contains(&root)) {
        return Err(Refusal::Wrapped(
            "the signature does not cover the assertion",
        ));
    }
    Ok(extract(&doc, root, *assertion))
}

/// The nodes the valid signatures of `doc` cover.
fn signed_nodes(doc: &Document<'_>, certificates: &[String]) -> Result<HashSet<NodeId>, Refusal> {
    let mut keys = KeysManager::new();
    for pem in certificates {
        let key = bergshamra::keys::loader::load_x509_cert_pem(pem.as_bytes())
            .map_err(|_| Refusal::BadSignature)?;
        keys.add_key(key);
    }
    // Hardened defaults: configured keys only, strict reference positions.
    let context = DsigContext::new(keys);
    let results = match bergshamra::dsig::verify::verify_all_document(&context, doc) {
        Ok(results) => results,
        Err(bergshamra::Error::MissingElement(_)) => return Err(Refusal::Unsigned),
        Err(bergshamra::Error::XmlStructure(_)) => {
            return Err(Refusal::Wrapped("duplicate ids or misplaced references"))
        }
        Err(_) => return Err(Refusal::BadSignature),
    };
    let mut covered = HashSet::new();
    for result in results {
        if let VerifyResult::Valid { references, .. } = result {
            covered.extend(references.iter().filter_map(|r| r.resolved_node));
        }
    }
    if covered.is_empty() {
        return Err(Refusal::BadSignature);
    }
    Ok(covered)
}

fn check_algorithms(doc: &Document<'_>) -> Result<(), Refusal> {
    let allowed = |element: &str, list: &[&str]| {
        doc.get_elements_by_tag_name_ns(DSIG, element)
            .into_iter()
            .all(|n| {
                doc.get_attribute(n, "Algorithm")
                    .is_some_and(|a| list.contains(&a))
            })
    };
    let ok = allowed("SignatureMethod", SIGNATURE_METHODS)
        && allowed("DigestMethod", DIGEST_METHODS)
        && allowed("Transform", TRANSFORMS)
        && allowed("CanonicalizationMethod", TRANSFORMS);
    if ok {
        Ok(())
    } else {
        Err(Refusal::WeakAlgorithm)
    }
}

fn refuse_comments(doc: &Document<'_>) -> Result<(), Refusal> {
    let mut stack = vec![doc.root()];
    while let Some(node) = stack.pop() {
        match doc.node_kind(node) {
            Some(NodeKind::Comment(_)) => return Err(Refusal::Malformed("comments")),
            Some(NodeKind::ProcessingInstruction(_)) => {
                return Err(Refusal::Malformed("processing instructions"))
            }
            _ => stack.extend(doc.children(node)),
        }
    }
    Ok(())
}

fn is(doc: &Document<'_>, node: NodeId, namespace: &str, local_name: &str) -> bool {
    doc.element(node)
        .is_some_and(|e| e.matches_name_ns(namespace, local_name))
}

fn attribute(doc: &Document<'_>, node: NodeId, name: &str) -> Option<String> {
    doc.get_attribute(node, name).map(str::to_owned)
}

/// The direct children of `node` named `{namespace}local_name`.
fn children<'d>(
    doc: &'d Document<'_>,
    node: NodeId,
    namespace: &'d str,
    local_name: &'d str,
) -> impl Iterator<Item = NodeId> + 'd {
    doc.children(node)
        .into_iter()
        .filter(move |&c| is(doc, c, namespace, local_name))
}

fn child(doc: &Document<'_>, node: NodeId, namespace: &str, local_name: &str) -> Option<NodeId> {
    children(doc, node, namespace, local_name).next()
}

fn text(doc: &Document<'_>, node: NodeId) -> String {
    doc.text_content_deep(node).trim().to_owned()
}

fn extract(doc: &Document<'_>, root: NodeId, assertion: NodeId) -> Assertion {
    let mut out = Assertion {
        id: attribute(doc, assertion, "ID").unwrap_or_default(),
        issuer: child(doc, assertion, ASSERTION, "Issuer").map(|n| text(doc, n)),
        response_issuer: child(doc, root, ASSERTION, "Issuer").map(|n| text(doc, n)),
        response_destination: attribute(doc, root, "Destination"),
        response_in_response_to: attribute(doc, root, "InResponseTo"),
        status: child(doc, root, PROTOCOL, "Status")
            .and_then(|s| child(doc, s, PROTOCOL, "StatusCode"))
            .and_then(|c| attribute(doc, c, "Value")),
        ..Assertion::default()
    };
    if let Some(subject) = child(doc, assertion, ASSERTION, "Subject") {
        if let Some(name_id) = child(doc, subject, ASSERTION, "NameID") {
            out.name_id = Some(text(doc, name_id));
            out.name_id_format = attribute(doc, name_id, "Format");
        }
        for confirmation in children(doc, subject, ASSERTION, "SubjectConfirmation") {
            if attribute(doc, confirmation, "Method").as_deref() != Some(BEARER) {
                continue;
            }
            let data = child(doc, confirmation, ASSERTION, "SubjectConfirmationData");
            out.bearers.push(Bearer {
                recipient: data.and_then(|d| attribute(doc, d, "Recipient")),
                not_on_or_after: data.and_then(|d| attribute(doc, d, "NotOnOrAfter")),
                in_response_to: data.and_then(|d| attribute(doc, d, "InResponseTo")),
            });
        }
    }
    if let Some(conditions) = child(doc, assertion, ASSERTION, "Conditions") {
        out.not_before = attribute(doc, conditions, "NotBefore");
        out.not_on_or_after = attribute(doc, conditions, "NotOnOrAfter");
        for restriction in children(doc, conditions, ASSERTION, "AudienceRestriction") {
            out.audiences
                .extend(children(doc, restriction, ASSERTION, "Audience").map(|a| text(doc, a)));
        }
    }
    for statement in children(doc, assertion, ASSERTION, "AttributeStatement") {
        for attr in children(doc, statement, ASSERTION, "Attribute") {
            out.attributes.push(Attribute {
                name: attribute(doc, attr, "Name").unwrap_or_default(),
                friendly_name: attribute(doc, attr, "FriendlyName"),
                values: children(doc, attr, ASSERTION, "AttributeValue")
                    .map(|v| text(doc, v))
                    .collect(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNSIGNED: &str = r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r" Version="2.0"><saml:Assertion ID="_a" Version="2.0"><saml:Subject><saml:NameID>alice</saml:NameID></saml:Subject></saml:Assertion></samlp:Response>"#;

    #[test]
    fn shapes_that_need_no_signature_check_are_refused_first() {
        assert_eq!(
            read("not xml", &[]).unwrap_err(),
            Refusal::Malformed("not well-formed XML")
        );
        assert_eq!(read(UNSIGNED, &[]).unwrap_err(), Refusal::Unsigned);
        let doctype = format!("<!DOCTYPE x [<!ENTITY e \"alice\">]>{UNSIGNED}");
        assert!(matches!(
            read(&doctype, &[]).unwrap_err(),
            Refusal::Malformed(_)
        ));
        let comment = UNSIGNED.replace(">alice<", ">alice<!---->.evil<");
        assert_eq!(
            read(&comment, &[]).unwrap_err(),
            Refusal::Malformed("comments")
        );
        let two = UNSIGNED.replace(
            "</samlp:Response>",
            r#"<saml:Assertion ID="_b" Version="2.0"/></samlp:Response>"#,
        );
        assert_eq!(
            read(&two, &[]).unwrap_err(),
            Refusal::Wrapped("more than one assertion")
        );
        let nested = r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r"><samlp:Extensions><saml:Assertion ID="_a"/></samlp:Extensions></samlp:Response>"#;
        assert_eq!(
            read(nested, &[]).unwrap_err(),
            Refusal::Wrapped("the assertion is not a child of the response")
        );
    }
}
