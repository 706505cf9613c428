//! How the observed KMS key differs from the desired one. Pure.

use std::collections::BTreeMap;

use super::desired::EncryptionKey;
use crate::engine::Drift;
use crate::groups::kit::{TagPlan, tag_change};
use crate::groups::{Changes, Diff};

/// The key's state in KMS, as far as the diff cares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyState {
    /// What a new key is.
    #[default]
    Enabled,
    Disabled,
    PendingDeletion,
    /// Creating, Updating, Unavailable, ...: AWS is working on it.
    Other,
}

/// The key as KMS reports it: its identity, and what is compared.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyView {
    pub key_id: String,
    pub arn: String,
    pub state: KeyState,
    pub description: String,
    pub rotation_enabled: bool,
    pub rotation_period_days: Option<i32>,
    pub tags: BTreeMap<String, String>,
    /// Deletion only: other keys made for this alias and owner that no alias names (a
    /// CreateKey whose reply was lost and was sent again, a crash before CreateAlias).
    pub strays: Vec<String>,
    /// Deletion only: whether the alias exists (the observed key is a stray otherwise).
    pub aliased: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Scheduled for deletion outside the operator: restore (old artifacts stay readable).
    CancelDeletion,
    Enable,
    Rotation,
    Description,
    Tags(TagPlan),
}

impl Diff<KeyView> for EncryptionKey {
    type Change = Change;

    fn diff(&self, o: &KeyView) -> Changes<Change> {
        let key = format!("KMS key {}", self.alias);
        let mut changes = Changes::new();
        // A key pending deletion reports no rotation; it is rewritten once restored (its policy
        // by the key policy step, which runs after this one).
        let pending = o.state == KeyState::PendingDeletion;
        if pending {
            let drift = Drift::value(&key, "state", "PendingDeletion", "Enabled");
            changes.push(Change::CancelDeletion, drift);
        }
        if matches!(o.state, KeyState::PendingDeletion | KeyState::Disabled) {
            changes.push(
                Change::Enable,
                Drift::value(&key, "enabled", "false", "true"),
            );
        }
        if pending
            || !o.rotation_enabled
            || o.rotation_period_days
                .is_some_and(|p| p != self.rotation_period_days)
        {
            let have = match (o.rotation_enabled, o.rotation_period_days) {
                (false, _) => "off".to_string(),
                (true, Some(days)) => format!("every {days} days"),
                (true, None) => "on".to_string(),
            };
            let want = format!("every {} days", self.rotation_period_days);
            changes.push(Change::Rotation, Drift::value(&key, "rotation", have, want));
        }
        if o.description != self.description {
            let drift = Drift::value(&key, "description", &o.description, &self.description);
            changes.push(Change::Description, drift);
        }
        tag_change(&mut changes, &key, &self.tags, &o.tags, Change::Tags);
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::testing::{MINIMAL, context};
    use crate::groups::encryption_key::desired::encryption_key;

    fn in_sync(d: &EncryptionKey) -> KeyView {
        KeyView {
            state: KeyState::Enabled,
            description: d.description.clone(),
            rotation_enabled: true,
            rotation_period_days: Some(d.rotation_period_days),
            tags: d.tags.tags.clone(),
            ..KeyView::default()
        }
    }

    #[test]
    fn an_equal_key_has_no_changes_even_with_extra_tags() {
        let d = encryption_key(&context(MINIMAL));
        let mut o = in_sync(&d);
        o.tags.insert("AddedByHand".into(), "x".into());
        // AWS may leave the period out when it is the default.
        o.rotation_period_days = None;
        assert_eq!(d.diff(&o), vec![]);
    }

    #[test]
    fn a_key_pending_deletion_is_restored_and_rewritten() {
        let d = encryption_key(&context(MINIMAL));
        let mut o = in_sync(&d);
        o.state = KeyState::PendingDeletion;
        o.rotation_enabled = false;
        assert_eq!(
            d.diff(&o),
            vec![Change::CancelDeletion, Change::Enable, Change::Rotation]
        );
    }

    #[test]
    fn each_drifted_setting_is_one_change() {
        let d = encryption_key(&context(MINIMAL));
        let mut o = in_sync(&d);
        o.rotation_period_days = Some(90);
        o.description = "changed".into();
        o.tags.remove("CostCenter");
        let changes = d.diff(&o).into_changes();
        assert_eq!(changes.len(), 3, "{changes:?}");
        assert!(changes.contains(&Change::Rotation) && changes.contains(&Change::Description));
    }
}
