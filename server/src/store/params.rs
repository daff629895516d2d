//! Numbered placeholders for statements whose parameter count varies, and
//! how many a statement should carry.
//!
//! sqlx's SQLite driver binds every parameter by asking SQLite for its name,
//! which SQLite finds by a linear scan of the statement's parameters: binding
//! n parameters costs n²/2 steps. Under load, 200-row inserts of 8 columns
//! spent more time there than SQLite spent running statements. Each distinct
//! statement text is also prepared and cached on its own, so a bounded
//! number of rows per statement keeps the texts few and the cache useful.

/// Parameters per statement that callers chunk their values to.
pub const MAX: usize = 128;

/// Rows of `columns` values that fit in one statement of [`MAX`] parameters.
pub const fn rows_per_statement(columns: usize) -> usize {
    let rows = MAX / columns;
    if rows == 0 {
        1
    } else {
        rows
    }
}

/// `$first, $first+1, …`: `n` placeholders for an `IN (…)` list.
pub fn list(first: usize, n: usize) -> String {
    let mut out = String::with_capacity(n * 5);
    for i in first..first + n {
        if i > first {
            out.push_str(", ");
        }
        out.push('$');
        out.push_str(&i.to_string());
    }
    out
}

/// `($1, …, $c), ($c+1, …)`: `rows` rows of `columns` placeholders for a
/// multi-row `VALUES`.
pub fn rows(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", list(r * columns + 1, columns)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `sql` with every placeholder `$n` renumbered `$n+offset`, for a
/// statement whose parameters follow `offset` others in one query. `sql`
/// must hold no `$` but its placeholders' (no literal or name has one).
pub fn shift(sql: &str, offset: usize) -> String {
    if offset == 0 {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + sql.len() / 8);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// Appends `value` to owned arguments (`sqlx::query_with`), with an
/// encoding failure as a `sqlx::Error`.
pub fn push<'q, T>(args: &mut sqlx::any::AnyArguments<'q>, value: T) -> Result<(), sqlx::Error>
where
    T: 'q + sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    sqlx::Arguments::add(args, value).map_err(sqlx::Error::Encode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifted_placeholders_keep_their_order_and_the_rest_of_the_text() {
        let sql = "SELECT $1, $15 FROM t WHERE a = $2 AND b = $10;";
        assert_eq!(shift(sql, 0), sql);
        assert_eq!(
            shift(sql, 17),
            "SELECT $18, $32 FROM t WHERE a = $19 AND b = $27;"
        );
        assert_eq!(shift("$1", 3), "$4");
        assert_eq!(shift("no parameters", 3), "no parameters");
    }

    #[test]
    fn placeholders_are_numbered_from_first() {
        assert_eq!(list(3, 3), "$3, $4, $5");
        assert_eq!(list(1, 0), "");
        assert_eq!(rows(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(rows_per_statement(8), 16);
        assert_eq!(rows_per_statement(500), 1);
    }
}
