//! The `[processing]` section: who answers for the processing, named in the
//! record of processing activities (GDPR Art. 30).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Processing {
    /// The controller: the institution's name and address.
    pub controller: String,
    /// How to reach the data-protection officer.
    pub dpo_contact: String,
}
