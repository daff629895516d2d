//! How values sit in the columns both backends share: flags as `0`/`1`
//! integers, JSON as text. One policy for a value that does not decode: an
//! error naming the column, logged here, so a corrupt row fails its request
//! loudly instead of reading as an empty object or a default.

use serde::de::DeserializeOwned;
use sqlx::any::AnyRow;
use sqlx::Row;

/// A flag column.
pub fn flag(row: &AnyRow, index: usize) -> Result<bool, sqlx::Error> {
    Ok(row.try_get::<i64, _>(index)? != 0)
}

/// How a flag is bound.
pub fn flag_param(value: bool) -> i64 {
    i64::from(value)
}

/// A JSON column; `column` names it (`table.column`) in the error.
pub fn json<T: DeserializeOwned>(
    row: &AnyRow,
    index: usize,
    column: &'static str,
) -> Result<T, sqlx::Error> {
    let text: String = row.try_get(index)?;
    decode(&text, column)
}

/// A nullable JSON column.
pub fn opt_json<T: DeserializeOwned>(
    row: &AnyRow,
    index: usize,
    column: &'static str,
) -> Result<Option<T>, sqlx::Error> {
    let text: Option<String> = row.try_get(index)?;
    text.map(|t| decode(&t, column)).transpose()
}

/// JSON text read from `column`.
pub fn decode<T: DeserializeOwned>(text: &str, column: &'static str) -> Result<T, sqlx::Error> {
    serde_json::from_str(text).map_err(|err| {
        // The value itself may be personal data; its length and the parse
        // error are enough to find the row.
        tracing::error!(column, len = text.len(), error = %err, "corrupt JSON in the database");
        sqlx::Error::ColumnDecode {
            index: column.to_owned(),
            source: Box::new(err),
        }
    })
}

/// A `LIKE … ESCAPE '\'` pattern matching text that contains `word`, with
/// LIKE's own wildcards in `word` taken literally.
pub fn contains_pattern(word: &str) -> String {
    let escaped = word
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use serde_json::Value;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn corrupt_json_is_a_logged_error_not_a_default() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let result = tracing::subscriber::with_default(subscriber, || {
            decode::<Value>("{\"ciphertext\": \"AwgA", "events.content")
        });
        let err = result.expect_err("truncated JSON must not decode");
        assert!(err.to_string().contains("events.content"), "{err}");
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("corrupt JSON in the database"), "{log}");
        assert!(log.contains("events.content"), "{log}");
        assert!(
            !log.contains("AwgA"),
            "the value stays out of the log: {log}"
        );
        assert_eq!(
            decode::<Value>("{\"a\":1}", "x.y").unwrap(),
            serde_json::json!({"a": 1})
        );
    }
}
