//! The console's static files, embedded at build time (`build.rs`): the
//! pages under `server/console/`, the audit verifier's loader
//! (`audit/wasm/verify.mjs`) and the verifier compiled to WebAssembly.

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ApiResult};

static FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));
/// Empty when the build could not make it (no wasm32 target).
static VERIFIER_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/audit_verify.wasm"));
static VERIFIER_LOADER: &[u8] = include_bytes!("../../../../audit/wasm/verify.mjs");

/// The embedded file at `name` (relative to `server/console/`).
pub fn file(name: &str) -> Option<&'static [u8]> {
    match name {
        "audit_verify.wasm" => Some(VERIFIER_WASM).filter(|w| !w.is_empty()),
        "verify.mjs" => Some(VERIFIER_LOADER),
        _ => FILES.iter().find(|(n, _)| *n == name).map(|(_, b)| *b),
    }
}

/// Every embedded file's name, for the tests of the catalogs.
pub fn names() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|(n, _)| *n)
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("wasm") => "application/wasm",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

fn serve(name: &str) -> ApiResult<Response> {
    let bytes = file(name).ok_or_else(|| ApiError::not_found("No such console file"))?;
    let mut response = bytes.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    Ok(response)
}

/// `GET /_cloister/console/`: the console's one page.
pub(in crate::api) async fn index() -> ApiResult<Response> {
    serve("index.html")
}

/// `GET /_cloister/console/assets/{path}`: its scripts, styles, catalogs
/// and the verifier. Only embedded names answer; there is no file system
/// behind this, so no path can reach outside it.
pub(in crate::api) async fn asset(Path(path): Path<String>) -> ApiResult<Response> {
    serve(&path)
}

#[cfg(test)]
mod tests {
    //! The message catalogs: every language has every key the pages use,
    //! and no string is looked up by a key that is computed (which no
    //! check could follow).

    use std::collections::{BTreeMap, BTreeSet};

    use super::{file, names};

    const LANGUAGES: [&str; 4] = ["en", "de", "es", "ca"];

    fn catalog(lang: &str) -> BTreeMap<String, String> {
        let name = format!("i18n/{lang}.json");
        let bytes = file(&name).unwrap_or_else(|| panic!("{name} is missing"));
        serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn is_ident(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'.'
    }

    /// The quoted literal at the start of `rest`, if it starts with one.
    fn literal(rest: &[u8]) -> Option<String> {
        let quote = *rest.first()?;
        if quote != b'"' && quote != b'\'' {
            return None;
        }
        let end = rest[1..].iter().position(|b| *b == quote)?;
        Some(String::from_utf8_lossy(&rest[1..1 + end]).into_owned())
    }

    /// Keys a file looks up: `t("key")` calls and `data-i18n…="key"`
    /// attributes; a `t(` call without a literal key is an error.
    fn used_keys(name: &str, text: &[u8], keys: &mut BTreeSet<String>, errors: &mut Vec<String>) {
        for i in 0..text.len() {
            let rest = &text[i..];
            if rest.starts_with(b"t(") && (i == 0 || !is_ident(text[i - 1])) {
                let after = &rest[2..];
                let skip = after.iter().take_while(|b| b.is_ascii_whitespace()).count();
                let argument: Vec<u8> = after[skip..]
                    .iter()
                    .take_while(|b| !matches!(b, b')' | b','))
                    .copied()
                    .collect();
                let defining = text[..i].ends_with(b"function ");
                // A key read from a data-i18n attribute was scanned there.
                let from_attribute = argument.windows(12).any(|w| w == b"dataset.i18n");
                match literal(&after[skip..]) {
                    Some(key) => {
                        keys.insert(key);
                    }
                    None if defining || argument.is_empty() || from_attribute => {}
                    None => {
                        let line = text[..i].iter().filter(|b| **b == b'\n').count() + 1;
                        errors.push(format!("{name}:{line}: t( without a literal key"));
                    }
                }
            }
            if rest.starts_with(b"data-i18n") {
                let eq = rest.iter().take(40).position(|b| *b == b'=');
                if let Some(key) = eq.and_then(|eq| literal(&rest[eq + 1..])) {
                    keys.insert(key);
                }
            }
        }
    }

    fn placeholders(text: &str) -> BTreeSet<&str> {
        text.split('{')
            .skip(1)
            .filter_map(|s| s.split_once('}').map(|(name, _)| name))
            .collect()
    }

    #[test]
    fn every_catalog_has_every_key_the_pages_use() {
        let mut used = BTreeSet::new();
        let mut errors = Vec::new();
        for name in names().filter(|n| n.ends_with(".js") || n.ends_with(".html")) {
            used_keys(name, file(name).expect("listed"), &mut used, &mut errors);
        }
        assert!(!used.is_empty(), "no message keys found in the pages");
        let english = catalog("en");
        for lang in LANGUAGES {
            let messages = catalog(lang);
            for key in &used {
                match messages.get(key) {
                    None => errors.push(format!("i18n/{lang}.json lacks {key:?}")),
                    Some(text) if text.trim().is_empty() => {
                        errors.push(format!("i18n/{lang}.json: {key:?} is empty"))
                    }
                    Some(text) => {
                        let want = placeholders(&english[key]);
                        if placeholders(text) != want {
                            errors.push(format!(
                                "i18n/{lang}.json: {key:?} has placeholders {:?}, English {want:?}",
                                placeholders(text)
                            ));
                        }
                    }
                }
            }
            for key in messages.keys().filter(|k| !used.contains(*k)) {
                errors.push(format!("i18n/{lang}.json: {key:?} is used nowhere"));
            }
        }
        assert!(errors.is_empty(), "{}", errors.join("\n"));
    }

    #[test]
    fn the_verifier_and_its_loader_are_embedded() {
        let loader = file("verify.mjs").expect("the loader is always embedded");
        assert!(std::str::from_utf8(loader)
            .unwrap()
            .contains("loadVerifier"));
        // Built unless the wasm32 target is missing, which CI never allows.
        if std::env::var_os("CI").is_some() {
            let wasm = file("audit_verify.wasm").expect("CI builds the verifier");
            assert_eq!(&wasm[..4], b"\0asm");
        }
    }
}
