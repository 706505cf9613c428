//! Running the graph: apply in dependency order (independent steps concurrently), delete in
//! reverse order. A failure blocks only the steps that depend on it.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;

use super::failure::Failure;
use super::graph::{Graph, GraphError};
use super::key::Values;
use super::step::{Applied, Drift, Owned, Removal, Step};

/// What happened to one step in a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Applied(Applied),
    Failed(Failure),
    /// Not attempted: an input is missing because the steps named here did not complete (on
    /// deletion: dependents that are not gone yet).
    Blocked {
        waiting_for: Vec<String>,
    },
    /// Deleted (or deleting) because the spec no longer wants it, or on pipeline deletion.
    Removed(Removal),
    /// Observe-only: the spec no longer wants it, it still exists, and it is left in place;
    /// the drift says what a managed run would delete.
    Kept(Vec<Drift>),
}

impl Outcome {
    /// What an observe-only run found for this step (empty after an apply or a delete).
    pub fn drift(&self) -> &[Drift] {
        match self {
            Outcome::Applied(a) => &a.drift,
            Outcome::Kept(drift) => drift,
            _ => &[],
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    pub condition: String,
    pub kind: String,
    pub wanted: bool,
    pub outcome: Outcome,
}

impl StepReport {
    pub fn failure(&self) -> Option<&Failure> {
        match &self.outcome {
            Outcome::Failed(f) => Some(f),
            _ => None,
        }
    }

    /// Whether the step completed its part of the run (applied, or confirmed gone).
    pub fn completed(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Applied(_) | Outcome::Removed(Removal::Gone)
        )
    }

    pub fn owned(&self) -> &[Owned] {
        match &self.outcome {
            Outcome::Applied(a) => &a.owned,
            _ => &[],
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// In the order of the step list.
    pub steps: Vec<StepReport>,
    /// Seed values plus everything applied steps provided.
    pub values: Values,
}

impl Report {
    pub fn failures(&self) -> impl Iterator<Item = &Failure> {
        self.steps.iter().filter_map(StepReport::failure)
    }

    /// Errors only (not AWS still working).
    pub fn errors(&self) -> impl Iterator<Item = &Failure> {
        self.failures().filter(|f| f.is_error())
    }

    /// Observe-only runs: every difference found, with the step it belongs to.
    pub fn drift(&self) -> impl Iterator<Item = (&StepReport, &Drift)> {
        self.steps
            .iter()
            .flat_map(|s| s.outcome.drift().iter().map(move |d| (s, d)))
    }

    /// True when every step is confirmed gone (after a delete run).
    pub fn all_gone(&self) -> bool {
        self.steps
            .iter()
            .all(|s| s.outcome == Outcome::Removed(Removal::Gone))
    }
}

type Running<'a, T> = FuturesUnordered<BoxFuture<'a, (usize, T)>>;

/// Whether a run changes AWS or only reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Manage,
    Preview,
}

/// Brings every wanted step to its desired state and deletes the unwanted ones.
/// Generic over the step type so callers may pass any trait object that has `Step` as a
/// supertrait.
pub async fn apply<S: Step + ?Sized>(steps: &[Box<S>], seed: Values) -> Result<Report, GraphError> {
    run(steps, seed, Mode::Manage).await
}

/// The same walk as [`apply`], reading only: each step reports what it would change
/// (`Applied::drift`), unwanted steps what they would delete ([`Outcome::Kept`]).
pub async fn preview<S: Step + ?Sized>(
    steps: &[Box<S>],
    seed: Values,
) -> Result<Report, GraphError> {
    run(steps, seed, Mode::Preview).await
}

async fn run<S: Step + ?Sized>(
    steps: &[Box<S>],
    seed: Values,
    mode: Mode,
) -> Result<Report, GraphError> {
    let graph = Graph::build(steps, &seed.keys().copied().collect())?;
    let mut values = seed;
    let mut outcomes: Vec<Option<Outcome>> = vec![None; steps.len()];
    let wanted: BTreeSet<usize> = (0..steps.len()).filter(|&i| steps[i].wanted()).collect();
    let mut started = vec![false; steps.len()];
    let mut running: Running<'_, Result<Applied, Failure>> = FuturesUnordered::new();
    loop {
        // Start what is ready; block what waits on a step that did not complete.
        let mut changed = true;
        while changed {
            changed = false;
            for &i in &wanted {
                if started[i] {
                    continue;
                }
                let mut waiting_for = Vec::new();
                let mut pending = false;
                for (key, provider) in &graph.inputs[i] {
                    let Some(p) = provider else { continue };
                    match &outcomes[*p] {
                        None => pending = true,
                        Some(Outcome::Applied(a)) if a.values.contains_key(key) => {}
                        Some(_) => waiting_for.push(steps[*p].condition().to_string()),
                    }
                }
                if !waiting_for.is_empty() {
                    // A step may need several keys of one provider.
                    waiting_for.sort();
                    waiting_for.dedup();
                    started[i] = true;
                    outcomes[i] = Some(Outcome::Blocked { waiting_for });
                    changed = true;
                } else if !pending {
                    started[i] = true;
                    let inputs: Values = graph.inputs[i]
                        .iter()
                        .filter_map(|(k, _)| values.get(k).map(|v| (*k, v.clone())))
                        .collect();
                    let step = &steps[i];
                    running.push(Box::pin(async move {
                        let result = match mode {
                            Mode::Manage => step.apply(&inputs).await,
                            Mode::Preview => step.preview(&inputs).await,
                        };
                        (i, result)
                    }));
                    changed = true;
                }
            }
        }
        let Some((i, result)) = running.next().await else {
            break;
        };
        outcomes[i] = Some(match result {
            Ok(applied) => {
                values.extend(applied.values.clone());
                Outcome::Applied(applied)
            }
            Err(failure) => Outcome::Failed(failure),
        });
    }
    // Unwanted steps are deleted, dependents first.
    let unwanted: BTreeSet<usize> = (0..steps.len()).filter(|i| !wanted.contains(i)).collect();
    let removed = match mode {
        Mode::Manage => remove(steps, &graph, &unwanted).await,
        Mode::Preview => preview_removals(steps, &unwanted).await,
    };
    for (i, outcome) in removed {
        outcomes[i] = Some(outcome);
    }
    Ok(Report {
        steps: steps
            .iter()
            .zip(outcomes)
            .map(|(step, outcome)| StepReport {
                condition: step.condition().to_string(),
                kind: step.kind().to_string(),
                wanted: step.wanted(),
                outcome: outcome.unwrap_or(Outcome::Blocked {
                    waiting_for: Vec::new(),
                }),
            })
            .collect(),
        values,
    })
}

/// Deletes every step, dependents first: a step is deleted only once every step that needs it
/// is confirmed gone, so nothing is left pointing at a deleted dependency.
pub async fn delete<S: Step + ?Sized>(steps: &[Box<S>]) -> Result<Report, GraphError> {
    // Deletion works from identity: needs are not resolved, so no seed is required.
    let seeded = steps.iter().flat_map(|s| s.needs()).collect();
    let graph = Graph::build(steps, &seeded)?;
    let all: BTreeSet<usize> = (0..steps.len()).collect();
    let mut outcomes: BTreeMap<usize, Outcome> = remove(steps, &graph, &all).await;
    Ok(Report {
        steps: steps
            .iter()
            .enumerate()
            .map(|(i, step)| StepReport {
                condition: step.condition().to_string(),
                kind: step.kind().to_string(),
                wanted: step.wanted(),
                outcome: outcomes.remove(&i).unwrap_or(Outcome::Blocked {
                    waiting_for: Vec::new(),
                }),
            })
            .collect(),
        values: Values::new(),
    })
}

/// What deleting the steps in `which` would remove (reads only, so in no particular order).
async fn preview_removals<S: Step + ?Sized>(
    steps: &[Box<S>],
    which: &BTreeSet<usize>,
) -> BTreeMap<usize, Outcome> {
    let looks = which.iter().map(|&i| {
        let step = &steps[i];
        async move {
            let outcome = match step.preview_removal().await {
                Ok(drift) if drift.is_empty() => Outcome::Removed(Removal::Gone),
                Ok(drift) => Outcome::Kept(drift),
                Err(failure) => Outcome::Failed(failure),
            };
            (i, outcome)
        }
    });
    futures::future::join_all(looks).await.into_iter().collect()
}

/// Deletes the steps in `which`, each after its dependents within `which` are gone.
async fn remove<S: Step + ?Sized>(
    steps: &[Box<S>],
    graph: &Graph,
    which: &BTreeSet<usize>,
) -> BTreeMap<usize, Outcome> {
    let mut outcomes: BTreeMap<usize, Outcome> = BTreeMap::new();
    let mut started: BTreeSet<usize> = BTreeSet::new();
    let mut running: Running<'_, Result<Removal, Failure>> = FuturesUnordered::new();
    loop {
        let mut changed = true;
        while changed {
            changed = false;
            for &i in which {
                if started.contains(&i) {
                    continue;
                }
                let dependents: Vec<usize> = graph.dependents[i]
                    .iter()
                    .copied()
                    .filter(|d| which.contains(d))
                    .collect();
                let mut waiting_for = Vec::new();
                let mut pending = false;
                for d in dependents {
                    match outcomes.get(&d) {
                        None => pending = true,
                        Some(Outcome::Removed(Removal::Gone)) => {}
                        Some(_) => waiting_for.push(steps[d].condition().to_string()),
                    }
                }
                if !waiting_for.is_empty() {
                    started.insert(i);
                    outcomes.insert(i, Outcome::Blocked { waiting_for });
                    changed = true;
                } else if !pending {
                    started.insert(i);
                    let step = &steps[i];
                    running.push(Box::pin(async move { (i, step.delete().await) }));
                    changed = true;
                }
            }
        }
        let Some((i, result)) = running.next().await else {
            break;
        };
        outcomes.insert(
            i,
            match result {
                Ok(removal) => Outcome::Removed(removal),
                Err(failure) => Outcome::Failed(failure),
            },
        );
    }
    outcomes
}
