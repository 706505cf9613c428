//! How the observed pipeline differs from the desired one. Pure. The structure is compared as
//! a whole after reading it back into the desired shape (AWS adds defaults, a version and
//! metadata, none of which the operator sets), so any difference is one UpdatePipeline.

use std::collections::BTreeMap;

use super::desired::{Pipeline, Structure};
use crate::engine::Drift;
use crate::groups::kit::{TagPlan, tag_change};
use crate::groups::{Changes, Diff};

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
    /// Cannot be fixed by the operator under the administrators' policy: the bucket's owner
    /// must turn on EventBridge notifications.
    SourceSendsNoEvents,
    Create,
    Update,
    Tags(TagPlan),
}

impl Diff<View> for Pipeline {
    type Change = Change;

    fn diff(&self, o: &View) -> Changes<Change> {
        let d = self;
        let mut changes = Changes::new();
        if let Some(bucket) = &o.source_bucket {
            let name = format!("source bucket {}", d.source_bucket.as_deref().unwrap_or(""));
            if !bucket.versioned {
                let field = "versioning (the bucket's owner must turn it on)";
                let drift = Drift::value(&name, field, "off", "on");
                changes.push(Change::SourceNotVersioned, drift);
            }
            if !bucket.sends_events {
                let change = if d.manage_source_events {
                    Change::SendSourceEvents
                } else {
                    Change::SourceSendsNoEvents
                };
                let drift = Drift::value(&name, "EventBridge notifications", "off", "on");
                changes.push(change, drift);
            }
        }
        let pipeline = format!("CodePipeline {}", d.name);
        match &o.pipeline {
            None => changes.push(Change::Create, Drift::create(pipeline)),
            Some(actual) => {
                if actual.structure != d.structure {
                    let drift = structure_drift(&pipeline, &actual.structure, &d.structure);
                    changes.push_all(Change::Update, drift);
                }
                tag_change(&mut changes, &pipeline, &d.tags, &actual.tags, Change::Tags);
            }
        }
        changes
    }
}

fn structure_drift(pipeline: &str, have: &Structure, want: &Structure) -> Vec<Drift> {
    let mut drift = Vec::new();
    let mut compare = |field: &str, have: &str, want: &str| {
        if have != want {
            drift.push(Drift::value(pipeline, field, have, want));
        }
    };
    compare("role", &have.role_arn, &want.role_arn);
    compare(
        "artifact bucket",
        &have.artifact_bucket,
        &want.artifact_bucket,
    );
    compare("KMS key", &have.kms_key_arn, &want.kms_key_arn);
    compare("pipeline type", &have.pipeline_type, &want.pipeline_type);
    compare("execution mode", &have.execution_mode, &want.execution_mode);
    let names = |s: &Structure| {
        s.stages
            .iter()
            .map(|stage| stage.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if names(have) != names(want) {
        drift.push(Drift::value(pipeline, "stages", names(have), names(want)));
    } else {
        for (h, w) in have.stages.iter().zip(&want.stages) {
            if h != w {
                drift.push(Drift::field(pipeline, format!("stage {}", w.name)));
            }
        }
    }
    if have.triggers != want.triggers {
        drift.push(Drift::field(pipeline, "triggers"));
    }
    if drift.is_empty() {
        drift.push(Drift::field(pipeline, "structure"));
    }
    drift
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::testing::{MINIMAL, context};
    use crate::groups::pipeline::desired::pipeline;
    use crate::groups::pipeline::desired::tests::inputs;

    fn desired() -> Pipeline {
        pipeline(&context(MINIMAL), &inputs(BTreeMap::new()))
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
        assert_eq!(d.diff(&in_sync(&d)), vec![]);
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
        assert_eq!(d.diff(&o), vec![Change::Update]);
    }

    #[test]
    fn an_unversioned_source_is_reported_and_events_are_turned_on() {
        let d = desired();
        let mut o = in_sync(&d);
        o.source_bucket = Some(SourceBucketView::default());
        assert_eq!(
            d.diff(&o),
            vec![Change::SourceNotVersioned, Change::SendSourceEvents]
        );
    }
}
