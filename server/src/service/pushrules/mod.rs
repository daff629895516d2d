//! Push rules. The server keeps each user's rule set, hands it to every
//! device, and evaluates it (`evaluate`) for notification counts and pushes;
//! clients refine the answer once they have decrypted an event. The whole set is stored as global account data of type
//! `m.push_rules`, which is how `/sync` delivers it; `rules` holds the
//! spec's defaults and the rule-set edits.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::error::ApiResult;
use crate::service::Context;
use crate::store::account_data;

pub mod evaluate;
mod rules;

use rules::with_defaults;
pub use rules::{
    build_rule, check_actions, check_kind, default_ruleset, delete, find_rule, upsert_rule,
    RuleBody,
};

pub const PUSH_RULES: &str = "m.push_rules";

/// The user's rule set, `{"global": {...}}`, defaults included.
pub async fn load(state: &Context, user_id: &str) -> ApiResult<Value> {
    let stored =
        account_data::get(&mut *state.store.read().await?, user_id, "", PUSH_RULES).await?;
    Ok(with_defaults(stored, user_id))
}

/// The `global` rules in force for a user whose stored rule set is
/// `stored` (None: never edited), defaults included, as
/// [`evaluate::evaluate`] reads them: the shared defaults for a user who
/// kept them, which hold the spec's placeholders for the user's ids.
pub fn effective_global(stored: Option<Value>, user_id: &str) -> Cow<'static, Value> {
    match stored {
        None => Cow::Borrowed(rules::default_template()),
        Some(stored) => Cow::Owned(with_defaults(Some(stored), user_id)["global"].take()),
    }
}

/// Applies `change` to the user's global rules and stores the result at a
/// new stream position, so every device sees it in `/sync`.
pub async fn modify(
    state: &Context,
    user_id: &str,
    change: impl FnOnce(&mut Map<String, Value>) -> ApiResult<()>,
) -> ApiResult<()> {
    let mut tx = state.store.write().await?;
    // Taken before the read: the position's row lock is held to commit, so
    // two edits of one rule set cannot interleave, on PostgreSQL too.
    let pos = tx.next_pos().await?;
    let stored = account_data::get(tx.conn(), user_id, "", PUSH_RULES).await?;
    let mut set = with_defaults(stored, user_id);
    let global = set["global"]
        .as_object_mut()
        .expect("with_defaults builds an object");
    change(global)?;
    account_data::put(&mut tx, user_id, "", PUSH_RULES, &set, pos).await?;
    tx.commit().await?;
    state.notifier.notify([user_id]);
    Ok(())
}

pub async fn read_rule(
    state: &Context,
    user_id: &str,
    kind: &str,
    rule_id: &str,
) -> ApiResult<Value> {
    check_kind(kind)?;
    let mut set = load(state, user_id).await?;
    let global = set["global"]
        .as_object_mut()
        .expect("with_defaults builds an object");
    Ok(find_rule(global, kind, rule_id)?.take())
}
