//! Finding people (spec: "User directory"): by default the people who share
//! a room with the searcher or sit in a published room, and with
//! `directory.search_all_users` every active account. Deactivated accounts
//! never appear, and erased ones have no account row left to find.
//!
//! A match is case-insensitive: every word of the search term must begin a
//! word of the user's localpart, display name, department or the local
//! part of their mail (`"ali sm"` finds "Alice Smith", `"fin"` everyone in
//! Finance), or the term must begin the user id or the mail address. The
//! mail's domain is no word to match: it is everyone's. Mail and department
//! are those directory sign-in imported, where the operator configured it.

use crate::error::{ApiError, ApiResult};
use crate::service::Context;
use crate::store::directory::{self, Among, Attributes, DirectoryUser};

pub const DEFAULT_LIMIT: i64 = 10;
pub const MAX_LIMIT: i64 = 50;

/// Rows one search considers at most. A one-letter term on a large server
/// matches most accounts; ranking them all per keystroke is not worth it,
/// and the answer says `limited` either way.
const MAX_CANDIDATES: i64 = 1000;

/// A term with no ASCII letters or digits cannot narrow the query (below),
/// so it reads up to this many accounts and matches them here.
const MAX_UNNARROWED: i64 = 100_000;

/// The longest run of ASCII letters and digits in the term, which every
/// match contains: the database narrows the candidates by it. SQLite
/// lower-cases ASCII only, so the rest of a word (`zoë` → `zo`) is matched
/// after the query, here. Of a term that starts like a user id, only the
/// localpart counts: the server name is in every id.
fn narrowing(term: &str) -> Option<String> {
    let searchable = match term.strip_prefix('@') {
        Some(id) => id.split(':').next().unwrap_or(""),
        None => term,
    };
    searchable
        .split(|c: char| !c.is_ascii_alphanumeric())
        .max_by_key(|run| run.len())
        .filter(|run| !run.is_empty())
        .map(str::to_owned)
}

pub struct Found {
    pub user_id: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub attributes: Attributes,
}

pub struct SearchResult {
    pub results: Vec<Found>,
    pub limited: bool,
}

/// The lower-cased words of `text`: runs of letters and digits.
fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// 0 for a match at the very start of the localpart or display name, 1 for
/// one inside it, `None` for none.
fn rank(term: &str, term_words: &[String], user: &DirectoryUser) -> Option<u8> {
    let localpart = crate::ids::parse_user_id(&user.user_id).map_or("", |(l, _)| l);
    let name = user.displayname.as_deref().unwrap_or("");
    if term.starts_with('@') && user.user_id.to_lowercase().starts_with(term) {
        return Some(0);
    }
    let mail = user.attributes.mail.as_deref().unwrap_or("");
    if term.contains('@') && !term.starts_with('@') && mail.to_lowercase().starts_with(term) {
        return Some(0);
    }
    let mut theirs = words(localpart);
    theirs.extend(words(name));
    theirs.extend(words(mail.split('@').next().unwrap_or("")));
    theirs.extend(words(user.attributes.department.as_deref().unwrap_or("")));
    let all_match = !term_words.is_empty()
        && term_words
            .iter()
            .all(|t| theirs.iter().any(|w| w.starts_with(t.as_str())));
    if !all_match {
        return None;
    }
    let first = &term_words[0];
    let starts = |s: &str| {
        words(s)
            .first()
            .is_some_and(|w| w.starts_with(first.as_str()))
    };
    Some(if starts(localpart) || starts(name) {
        0
    } else {
        1
    })
}

pub async fn search(
    ctx: &Context,
    searcher: &str,
    term: &str,
    limit: Option<i64>,
) -> ApiResult<SearchResult> {
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(l) if l < 1 => {
            return Err(ApiError::invalid_param("limit must be a positive integer"))
        }
        Some(l) => l.min(MAX_LIMIT),
    };
    if term.chars().count() > 256 {
        return Err(ApiError::invalid_param(
            "search_term is longer than 256 characters",
        ));
    }
    if ctx.config.rate_limit.enabled {
        ctx.directory_limiter
            .check(searcher)
            .map_err(ApiError::limit_exceeded)?;
    }
    let term = term.trim().to_lowercase();
    let term_words = words(&term);
    if term_words.is_empty() && !term.starts_with('@') {
        return Ok(SearchResult {
            results: Vec::new(),
            limited: false,
        });
    }
    let narrowing = narrowing(&term);
    let cap = if narrowing.is_some() {
        MAX_CANDIDATES
    } else {
        MAX_UNNARROWED
    };
    let among = if ctx.config.directory.search_all_users {
        Among::Everyone
    } else {
        Among::RoomsOf { searcher }
    };
    let mut conn = ctx.store.read().await?;
    let candidates = directory::candidates(
        &mut conn,
        among,
        &ctx.system_user_id(),
        narrowing.as_deref(),
        cap,
    )
    .await?;
    drop(conn);
    let truncated = candidates.len() as i64 >= cap;
    let mut ranked: Vec<(u8, DirectoryUser)> = candidates
        .into_iter()
        .filter_map(|u| rank(&term, &term_words, &u).map(|r| (r, u)))
        .collect();
    ranked.sort_by(|a, b| (a.0, &a.1.user_id).cmp(&(b.0, &b.1.user_id)));
    let limited = truncated || ranked.len() as i64 > limit;
    ranked.truncate(limit as usize);
    Ok(SearchResult {
        results: ranked
            .into_iter()
            .map(|(_, u)| Found {
                user_id: u.user_id,
                display_name: u.displayname,
                avatar_url: u.avatar_url,
                attributes: u.attributes,
            })
            .collect(),
        limited,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, name: Option<&str>) -> DirectoryUser {
        DirectoryUser {
            user_id: id.into(),
            displayname: name.map(str::to_owned),
            avatar_url: None,
            attributes: Attributes::default(),
        }
    }

    #[test]
    fn narrowing_is_an_ascii_run_of_the_localpart() {
        assert_eq!(narrowing("alice sm").as_deref(), Some("alice"));
        assert_eq!(narrowing("@bob.sm:localhost").as_deref(), Some("bob"));
        assert_eq!(narrowing("zoë"), Some("zo".into()));
        assert_eq!(narrowing("мария"), None);
        assert_eq!(narrowing("@:x"), None);
    }

    #[test]
    fn words_begin_words() {
        let alice = user("@alice.smith:x", Some("Dr. Alice Smith-Jones"));
        let r = |t: &str| rank(&t.to_lowercase(), &words(t), &alice);
        assert_eq!(r("ali"), Some(0));
        assert_eq!(r("SMI"), Some(1));
        assert_eq!(r("jon ali"), Some(1));
        assert_eq!(r("dr"), Some(0));
        assert_eq!(r("lice"), None);
        assert_eq!(r("alice bob"), None);
        assert_eq!(r("@alice.sm"), Some(0));
        assert_eq!(r("@smith"), Some(1));
        let mut staff = user("@u123:x", Some("Alice"));
        staff.attributes = Attributes {
            mail: Some("a.liddell@city.example".into()),
            department: Some("Finance & Payroll".into()),
        };
        let r = |t: &str| rank(&t.to_lowercase(), &words(t), &staff);
        assert_eq!(r("fin"), Some(1));
        assert_eq!(r("alice payroll"), Some(0));
        assert_eq!(r("liddell"), Some(1));
        assert_eq!(r("a.liddell@ci"), Some(0));
        assert_eq!(r("city"), None, "the mail's domain is everyone's");
        let zoe = user("@zoe:x", Some("Zoë Ärger"));
        assert_eq!(rank("är", &words("är"), &zoe), Some(1));
        assert_eq!(rank("zoë", &words("ZOË"), &zoe), Some(0));
    }
}
