//! Escaping text for the few HTML pages (single sign-on) and XML documents
//! (SAML requests and metadata) the server writes itself. One rule serves
//! both: the five characters that can end text or an attribute value.

/// `text` safe inside element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
