//! The reconcile engine: drives the subresources in dependency order (the subresources of one
//! stage concurrently, stages one after another), and on deletion in reverse order.

pub mod conditions;
pub mod subresource;

use futures::future::join_all;

pub use subresource::{
    Action, Gone, Observation, OutputKey, Produced, SpecError, Step, StepError, Subresource,
};

use crate::desired::PipelineContext;

/// Subresources grouped by dependency: every subresource depends only on earlier stages.
pub type Stages = Vec<Vec<Box<dyn Step>>>;

#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    Done(Action),
    Failed(StepError),
    /// Not attempted because an earlier stage failed.
    Blocked {
        waiting_for: Vec<&'static str>,
    },
}

#[derive(Debug, Clone)]
pub struct StepReport {
    pub condition: &'static str,
    pub kind: &'static str,
    pub outcome: StepOutcome,
}

#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    pub steps: Vec<StepReport>,
    pub produced: Produced,
}

impl ApplyReport {
    pub fn errors(&self) -> impl Iterator<Item = &StepError> {
        self.steps.iter().filter_map(|s| match &s.outcome {
            StepOutcome::Failed(e) => Some(e),
            _ => None,
        })
    }
}

/// Brings every subresource to its desired state. `seed` holds outputs known before the run
/// (account, region, and what the last status recorded).
pub async fn apply(stages: &Stages, ctx: &PipelineContext, seed: Produced) -> ApplyReport {
    let mut report = ApplyReport {
        steps: Vec::new(),
        produced: seed,
    };
    let mut failed: Vec<&'static str> = Vec::new();
    for stage in stages {
        if !failed.is_empty() {
            for step in stage {
                report.steps.push(StepReport {
                    condition: step.condition(),
                    kind: step.kind(),
                    outcome: StepOutcome::Blocked {
                        waiting_for: failed.clone(),
                    },
                });
            }
            continue;
        }
        let upstream = report.produced.clone();
        let results = join_all(stage.iter().map(|step| step.apply(ctx, &upstream))).await;
        for (step, result) in stage.iter().zip(results) {
            let outcome = match result {
                Ok((action, produced)) => {
                    report.produced.merge(produced);
                    StepOutcome::Done(action)
                }
                Err(e) => {
                    failed.push(step.condition());
                    StepOutcome::Failed(e)
                }
            };
            report.steps.push(StepReport {
                condition: step.condition(),
                kind: step.kind(),
                outcome,
            });
        }
    }
    report
}

#[derive(Debug, Clone)]
pub struct DeleteReport {
    pub steps: Vec<(&'static str, &'static str, Result<Gone, StepError>)>,
}

impl DeleteReport {
    /// True when AWS confirmed every subresource gone.
    pub fn all_gone(&self) -> bool {
        self.steps
            .iter()
            .all(|(_, _, r)| matches!(r, Ok(Gone::Yes)))
    }
}

/// Deletes every subresource, dependents first. A stage is only deleted once every later stage
/// is confirmed gone, so nothing is left pointing at a deleted dependency.
pub async fn delete(stages: &Stages, ctx: &PipelineContext, seed: Produced) -> DeleteReport {
    // Outputs of what exists (e.g. the key ARN the bucket's desired state names). Nothing
    // depends on the last stage, and `remove` observes it anyway, so it is not looked at twice.
    let mut upstream = seed;
    for stage in stages.iter().take(stages.len().saturating_sub(1)) {
        let found = join_all(stage.iter().map(|step| step.look(ctx, &upstream))).await;
        for produced in found.into_iter().flatten().flatten() {
            upstream.merge(produced);
        }
    }
    let mut report = DeleteReport { steps: Vec::new() };
    for stage in stages.iter().rev() {
        let results = join_all(stage.iter().map(|step| step.remove(ctx, &upstream))).await;
        let stage_gone = results.iter().all(|r| matches!(r, Ok(Gone::Yes)));
        for (step, result) in stage.iter().zip(results) {
            report.steps.push((step.condition(), step.kind(), result));
        }
        if !stage_gone {
            break;
        }
    }
    report
}
