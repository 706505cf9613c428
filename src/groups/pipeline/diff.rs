//! How the observed pipeline differs from the desired one. Pure. The structure is compared as
//! a whole after reading it back into the desired shape (AWS adds defaults, a version and
//! metadata, none of which the operator sets), so any difference is one UpdatePipeline.

use std::collections::BTreeMap;

use super::desired::{Pipeline, Structure};
use crate::groups::kit::TagPlan;

/// An S3 source bucket as the pipeline needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceBucketView {
    pub versioned: bool,
    /// S3 sends this bucket's events to EventBridge (what the trigger rule listens to).
    pub sends_events: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PipelineView {
    pub structure: Structure,
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct View {
    pub pipeline: Option<PipelineView>,
    pub source_bucket: Option<SourceBucketView>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Cannot be fixed by the operator: the user's bucket must keep object versions.
    SourceNotVersioned,
    /// Turn on S3's EventBridge delivery for the source bucket (the other notification
    /// settings of the user's bucket are kept).
    SendSourceEvents,
    Create,
    Update,
    Tags(TagPlan),
}

pub fn diff(d: &Pipeline, o: &View) -> Vec<Change> {
    let mut changes = Vec::new();
    if let Some(bucket) = &o.source_bucket {
        if !bucket.versioned {
            changes.push(Change::SourceNotVersioned);
        }
        if !bucket.sends_events {
            changes.push(Change::SendSourceEvents);
        }
    }
    match &o.pipeline {
        None => changes.push(Change::Create),
        Some(actual) => {
            if actual.structure != d.structure {
                changes.push(Change::Update);
            }
            let tags = d.tags.plan(&actual.tags);
            if !tags.is_empty() {
                changes.push(Change::Tags(tags));
            }
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::testing::{MINIMAL, context};
    use crate::groups::pipeline::desired::{Inputs, pipeline};

    fn desired() -> Pipeline {
        pipeline(
            &context(MINIMAL),
            &Inputs {
                role_arn: "arn:aws:iam::123456789012:role/p",
                artifact_bucket: "bucket",
                kms_key_arn: "arn:aws:kms:us-east-1:123456789012:key/k",
                build_project: "build",
                scan_project: "scan",
                approval_topic_arn: "arn:aws:sns:us-east-1:123456789012:approval",
                deploy_roles: BTreeMap::new(),
            },
        )
    }

    fn in_sync(d: &Pipeline) -> View {
        View {
            pipeline: Some(PipelineView {
                structure: d.structure.clone(),
                tags: d.tags.tags.clone(),
            }),
            source_bucket: Some(SourceBucketView {
                versioned: true,
                sends_events: true,
            }),
        }
    }

    #[test]
    fn an_equal_pipeline_needs_nothing() {
        let d = desired();
        assert_eq!(diff(&d, &in_sync(&d)), vec![]);
    }

    #[test]
    fn one_changed_action_setting_is_one_update() {
        let d = desired();
        let mut o = in_sync(&d);
        if let Some(p) = o.pipeline.as_mut() {
            p.structure.stages[4].actions[0]
                .configuration
                .insert("CustomData".into(), "edited".into());
        }
        assert_eq!(diff(&d, &o), vec![Change::Update]);
    }

    #[test]
    fn an_unversioned_source_is_reported_and_events_are_turned_on() {
        let d = desired();
        let mut o = in_sync(&d);
        o.source_bucket = Some(SourceBucketView::default());
        assert_eq!(
            diff(&d, &o),
            vec![Change::SourceNotVersioned, Change::SendSourceEvents]
        );
    }
}
