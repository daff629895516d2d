//! `CLOISTER_*` environment variables as settings, and the ones that look
//! like a mistyped setting.
//!
//! A variable with a double underscore (`CLOISTER_LIMITS__MAX_UPLOAD_SIZE`)
//! is a path into the configuration, so an unknown one is an error, as an
//! unknown key in the file is. A plain `CLOISTER_NAME` may belong to one of
//! the project's tools (`CLOISTER_URL`, `CLOISTER_TEST_POSTGRES_URL`), so an
//! unknown one is only warned about when it is a letter or two away from a
//! setting: a typo there used to be dropped without a word.

use serde_json::Value;

use super::{Config, ConfigError, Oidc, Saml};

const PREFIX: &str = "CLOISTER_";

/// Sets every `CLOISTER_*` setting found in `env` into `table`, over what
/// the file said.
pub(super) fn apply(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let known = known_keys()?;
    for (name, value) in env {
        let Some(key) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let path = split(key);
        if is_known_key(&known, &path) {
            set_path(table, &path, parse_env_value(&value));
        } else if path.len() > 1 {
            return Err(ConfigError::Invalid(unknown_setting(&known, &name)));
        }
    }
    Ok(())
}

/// Plain `CLOISTER_*` variables in `env` that are not settings but are
/// one or two letters away from one: each a sentence naming the variable
/// and the setting it is probably meant to be (never its value, which may
/// be a secret).
pub fn near_misses(env: &[(String, String)]) -> Vec<String> {
    let Ok(known) = known_keys() else {
        return Vec::new();
    };
    let names = variable_names(&known);
    env.iter()
        .filter_map(|(name, _)| {
            let key = name.strip_prefix(PREFIX)?;
            if key.contains("__") || is_known_key(&known, &split(key)) {
                return None;
            }
            let (distance, nearest) = nearest(&names, name)?;
            // Short names are a letter or two from many words; only a near
            // miss of a longer one is worth a warning.
            (distance <= 2 && key.len() >= 5)
                .then(|| format!("{name} is not a setting and is ignored; did you mean {nearest}?"))
        })
        .collect()
}

fn split(key: &str) -> Vec<String> {
    key.to_lowercase().split("__").map(str::to_owned).collect()
}

fn unknown_setting(known: &serde_json::Map<String, Value>, name: &str) -> String {
    let mut message = format!("{name} is not a setting");
    if let Some((distance, nearest)) = nearest(&variable_names(known), name) {
        if distance <= name.len() / 3 {
            message.push_str(&format!("; did you mean {nearest}?"));
        }
    }
    message.push_str(" (docs/operators.md lists the settings)");
    message
}

/// The known variable nearest to `name`, list indexes read as `0`, and how
/// many edits away it is; shown with `name`'s own index.
fn nearest(names: &[String], name: &str) -> Option<(usize, String)> {
    // Keys match whatever the case after the prefix; so must the suggestion.
    let name = name.to_uppercase();
    let index = name
        .split("__")
        .find(|segment| list_index(segment).is_some());
    let normalized: Vec<&str> = name
        .split("__")
        .map(|segment| match list_index(segment) {
            Some(_) => "0",
            None => segment,
        })
        .collect();
    let normalized = normalized.join("__");
    let (distance, nearest) = names
        .iter()
        .map(|known| (strsim::levenshtein(known, &normalized), known))
        .min()?;
    let shown = match index {
        Some(index) => nearest
            .split("__")
            .map(|segment| if segment == "0" { index } else { segment })
            .collect::<Vec<_>>()
            .join("__"),
        None => nearest.clone(),
    };
    Some((distance, shown))
}

/// Every variable that sets a leaf of `known`, upper case, with `0` as the
/// index of a list of tables.
fn variable_names(known: &serde_json::Map<String, Value>) -> Vec<String> {
    fn walk(prefix: &str, table: &serde_json::Map<String, Value>, out: &mut Vec<String>) {
        for (key, value) in table {
            let name = format!("{prefix}{}", key.to_uppercase());
            match value {
                Value::Object(inner) => walk(&format!("{name}__"), inner, out),
                Value::Array(items) => match items.first() {
                    Some(Value::Object(inner)) => walk(&format!("{name}__0__"), inner, out),
                    _ => out.push(name),
                },
                _ => out.push(name),
            }
        }
    }
    let mut out = Vec::new();
    walk(PREFIX, known, &mut out);
    out
}

/// Every key an environment variable may set: the defaults, plus one
/// default element for each list of tables, so `CLOISTER_OIDC__0__ISSUER`
/// is known although there are no providers by default. Serialized as
/// JSON, not TOML: TOML leaves out an option that is unset by default,
/// which made its variable look unknown and be skipped without a word (it
/// hid `limits.access_token_cache_ms` while that was an option).
fn known_keys() -> Result<serde_json::Map<String, Value>, ConfigError> {
    let invalid = |e: serde_json::Error| ConfigError::Invalid(e.to_string());
    let Value::Object(mut known) = serde_json::to_value(Config::default()).map_err(invalid)? else {
        return Err(ConfigError::Invalid("the defaults are not a table".into()));
    };
    known.insert(
        "oidc".into(),
        Value::Array(vec![serde_json::to_value(Oidc::default()).map_err(invalid)?]),
    );
    known.insert(
        "saml".into(),
        Value::Array(vec![serde_json::to_value(Saml::default()).map_err(invalid)?]),
    );
    Ok(known)
}

/// A list index in an environment variable's path (`OIDC__0__ID`); small,
/// so a typo cannot make the loader build a huge list.
fn list_index(segment: &str) -> Option<usize> {
    segment.parse().ok().filter(|&i| i < 64)
}

fn is_known_key(known: &serde_json::Map<String, Value>, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => known.contains_key(last),
        [first, index, rest @ ..] if matches!(known.get(first), Some(Value::Array(_))) => {
            let Some(Value::Array(items)) = known.get(first) else {
                return false;
            };
            matches!(items.first(), Some(Value::Object(t)) if list_index(index).is_some() && is_known_key(t, rest))
        }
        [first, rest @ ..] => {
            matches!(known.get(first), Some(Value::Object(t)) if is_known_key(t, rest))
        }
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    match path {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = table.entry(first.clone()).or_insert_with(|| {
                match rest.first().and_then(|s| list_index(s)) {
                    Some(_) => toml::Value::Array(Vec::new()),
                    None => toml::Value::Table(toml::Table::new()),
                }
            });
            match entry {
                toml::Value::Table(inner) => set_path(inner, rest, value),
                toml::Value::Array(items) => {
                    let Some((index, rest)) = rest.split_first() else {
                        return;
                    };
                    let Some(index) = list_index(index) else {
                        return;
                    };
                    while items.len() <= index {
                        items.push(toml::Value::Table(toml::Table::new()));
                    }
                    if let toml::Value::Table(inner) = &mut items[index] {
                        set_path(inner, rest, value);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Environment values are TOML scalars or arrays when they parse as such
/// (`8008`, `true`, `["!a:b"]`), and plain strings otherwise.
fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[&str]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|name| (name.to_string(), "1".to_string()))
            .collect()
    }

    fn load_error(name: &str) -> String {
        match Config::load(None, env(&[name])) {
            Err(ConfigError::Invalid(message)) => message,
            other => panic!("{name}: expected an error, got {other:?}"),
        }
    }

    #[test]
    fn an_unknown_nested_variable_stops_the_start_and_names_the_setting() {
        let message = load_error("CLOISTER_LIMITS__ACESS_TOKEN_CACHE_MS");
        assert!(
            message.contains("CLOISTER_LIMITS__ACESS_TOKEN_CACHE_MS is not a setting")
                && message.contains("did you mean CLOISTER_LIMITS__ACCESS_TOKEN_CACHE_MS?"),
            "{message}"
        );
        // A misspelt table, and a list entry's key with the entry's own index.
        assert!(load_error("CLOISTER_LIMIT__MAX_UPLOAD_SIZE")
            .contains("did you mean CLOISTER_LIMITS__MAX_UPLOAD_SIZE?"));
        assert!(load_error("CLOISTER_OIDC__3__ISUER")
            .contains("did you mean CLOISTER_OIDC__3__ISSUER?"));
        // Written in another case: the same guess, in the case of the docs.
        assert!(load_error("CLOISTER_Limits__Max_Uplod_Size")
            .contains("did you mean CLOISTER_LIMITS__MAX_UPLOAD_SIZE?"));
        // Nothing near: no guess, still an error.
        let far = load_error("CLOISTER_LDAP__SOMETHING_ELSE_ENTIRELY");
        assert!(!far.contains("did you mean"), "{far}");
        // Too deep, or below a plain value.
        load_error("CLOISTER_REGISTRATION__OPEN");
        load_error("CLOISTER_OIDC__99__ISSUER");
    }

    #[test]
    fn a_near_miss_of_a_plain_setting_is_warned_about_without_its_value() {
        let vars = vec![(
            "CLOISTER_REGISTRATON".to_string(),
            "secret-value".to_string(),
        )];
        let warnings = near_misses(&vars);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("CLOISTER_REGISTRATON is not a setting"));
        assert!(warnings[0].contains("did you mean CLOISTER_REGISTRATION?"));
        assert!(!warnings[0].contains("secret-value"));
        // It is ignored, not an error: plain names are shared with tools.
        assert!(Config::load(None, vars).is_ok());
    }

    #[test]
    fn the_projects_own_tool_variables_are_not_warned_about() {
        let tools = env(&[
            "CLOISTER_CONFIG",
            "CLOISTER_URL",
            "CLOISTER_BIN",
            "CLOISTER_CLI",
            "CLOISTER_AUDIT_WASM",
            "CLOISTER_HOMESERVER",
            "CLOISTER_STORE",
            "CLOISTER_STORE_PASSPHRASE",
            "CLOISTER_PASSWORD",
            "CLOISTER_RECOVERY_KEY",
            "CLOISTER_RECOVERY_PASSPHRASE",
            "CLOISTER_TEST_POSTGRES_URL",
            "CLOISTER_BENCH_POSTGRES_URL",
            "CLOISTER_JS_FILES",
            "CLOISTER_JS_VERBOSE",
        ]);
        assert_eq!(near_misses(&tools), Vec::<String>::new());
        assert!(Config::load(None, tools).is_ok());
    }

    /// Every `CLOISTER_A__B` variable the docs and scripts name is one the
    /// loader takes: a documented variable that is silently dropped is
    /// how `access_token_cache_ms` went unnoticed.
    #[test]
    fn every_nested_variable_the_docs_name_is_a_setting() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = vec![root.join("README.md"), root.join("SECURITY.md")];
        for dir in ["docs", "scripts"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                files.push(entry.unwrap().path());
            }
        }
        let known = known_keys().unwrap();
        let mut checked = 0;
        for file in files.iter().filter(|f| f.is_file()) {
            let Ok(text) = std::fs::read_to_string(file) else {
                continue;
            };
            for (at, _) in text.match_indices(PREFIX) {
                let name: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                let key = &name[PREFIX.len()..];
                // `CLOISTER_OIDC__<n>__…` and `CLOISTER_LIMITS__*` in prose,
                // and the typo operators.md shows on purpose.
                if !key.contains("__")
                    || key.ends_with('_')
                    || name == "CLOISTER_LIMITS__ACESS_TOKEN_CACHE_MS"
                {
                    continue;
                }
                assert!(
                    is_known_key(&known, &split(key)),
                    "{} names {name}, which is not a setting",
                    file.display()
                );
                checked += 1;
            }
        }
        assert!(checked > 20, "only {checked} variables found in the docs");
    }
}
