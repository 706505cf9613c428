//! How the observed KMS key differs from the desired one. Pure.

use std::collections::BTreeMap;

use super::desired::EncryptionKey;
use crate::engine::Drift;
use crate::groups::kit::{TagPlan, tag_drift};

/// The key's state in KMS, as far as the diff cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
    /// Creating, Updating, Unavailable, ...: AWS is working on it.
    Other,
}

/// The observed key, reduced to what is compared.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyView {
    pub state: KeyState,
    pub description: String,
    pub rotation_enabled: bool,
    pub rotation_period_days: Option<i32>,
    pub tags: BTreeMap<String, String>,
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

pub fn diff(d: &EncryptionKey, o: &KeyView) -> Vec<Change> {
    let mut changes = Vec::new();
    // A key pending deletion reports no rotation; it is rewritten once restored (its policy by
    // the key policy step, which runs after this one).
    let pending = o.state == KeyState::PendingDeletion;
    if pending {
        changes.push(Change::CancelDeletion);
    }
    if matches!(o.state, KeyState::PendingDeletion | KeyState::Disabled) {
        changes.push(Change::Enable);
    }
    if pending
        || !o.rotation_enabled
        || o.rotation_period_days
            .is_some_and(|p| p != d.rotation_period_days)
    {
        changes.push(Change::Rotation);
    }
    if o.description != d.description {
        changes.push(Change::Description);
    }
    let tags = d.tags.plan(&o.tags);
    if !tags.is_empty() {
        changes.push(Change::Tags(tags));
    }
    changes
}

/// One change in words.
pub fn describe(d: &EncryptionKey, o: &KeyView, change: &Change) -> Vec<Drift> {
    let key = format!("KMS key {}", d.alias);
    vec![match change {
        Change::CancelDeletion => Drift::value(&key, "state", "PendingDeletion", "Enabled"),
        Change::Enable => Drift::value(&key, "enabled", "false", "true"),
        Change::Rotation => Drift::value(
            &key,
            "rotation",
            match (o.rotation_enabled, o.rotation_period_days) {
                (false, _) => "off".to_string(),
                (true, Some(days)) => format!("every {days} days"),
                (true, None) => "on".to_string(),
            },
            format!("every {} days", d.rotation_period_days),
        ),
        Change::Description => Drift::value(&key, "description", &o.description, &d.description),
        Change::Tags(plan) => return tag_drift(&key, plan, &o.tags),
    }]
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
        }
    }

    #[test]
    fn an_equal_key_has_no_changes_even_with_extra_tags() {
        let d = encryption_key(&context(MINIMAL));
        let mut o = in_sync(&d);
        o.tags.insert("AddedByHand".into(), "x".into());
        // AWS may leave the period out when it is the default.
        o.rotation_period_days = None;
        assert_eq!(diff(&d, &o), vec![]);
    }

    #[test]
    fn a_key_pending_deletion_is_restored_and_rewritten() {
        let d = encryption_key(&context(MINIMAL));
        let mut o = in_sync(&d);
        o.state = KeyState::PendingDeletion;
        o.rotation_enabled = false;
        assert_eq!(
            diff(&d, &o),
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
        let changes = diff(&d, &o);
        assert_eq!(changes.len(), 3, "{changes:?}");
        assert!(changes.contains(&Change::Rotation) && changes.contains(&Change::Description));
    }
}
