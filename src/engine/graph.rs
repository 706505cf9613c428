//! The dependency graph derived from what steps need and provide.

use std::collections::{BTreeMap, BTreeSet};

use super::key::Key;
use super::step::Step;

/// A graph that cannot be run: a programming error in the registry, caught by a unit test.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("{step} needs {key}, which no step provides")]
    MissingProvider { step: String, key: String },
    #[error("{key} is provided by both {first} and {second}")]
    DuplicateProvider {
        key: String,
        first: String,
        second: String,
    },
    #[error("dependency cycle through {0}")]
    Cycle(String),
}

/// Indexes into the step list: for each step, the steps it depends on.
#[derive(Debug, Clone)]
pub struct Graph {
    pub depends_on: Vec<BTreeSet<usize>>,
    pub dependents: Vec<BTreeSet<usize>>,
    /// For each step, its needs and which step provides each (None: a seed value).
    pub inputs: Vec<Vec<(Key, Option<usize>)>>,
}

impl Graph {
    /// Builds the graph. `seeded` are keys known before the run (account, region).
    pub fn build<S: Step + ?Sized>(
        steps: &[Box<S>],
        seeded: &BTreeSet<Key>,
    ) -> Result<Self, GraphError> {
        let mut providers: BTreeMap<Key, usize> = BTreeMap::new();
        for (i, step) in steps.iter().enumerate() {
            for key in step.provides() {
                if let Some(first) = providers.insert(key, i) {
                    return Err(GraphError::DuplicateProvider {
                        key: key.to_string(),
                        first: steps[first].condition().to_string(),
                        second: step.condition().to_string(),
                    });
                }
            }
        }
        let n = steps.len();
        let mut graph = Graph {
            depends_on: vec![BTreeSet::new(); n],
            dependents: vec![BTreeSet::new(); n],
            inputs: vec![Vec::new(); n],
        };
        for (i, step) in steps.iter().enumerate() {
            for key in step.needs() {
                match providers.get(&key) {
                    Some(&p) => {
                        graph.depends_on[i].insert(p);
                        graph.dependents[p].insert(i);
                        graph.inputs[i].push((key, Some(p)));
                    }
                    None if seeded.contains(&key) => graph.inputs[i].push((key, None)),
                    None => {
                        return Err(GraphError::MissingProvider {
                            step: step.condition().to_string(),
                            key: key.to_string(),
                        });
                    }
                }
            }
        }
        graph.check_acyclic(steps)?;
        Ok(graph)
    }

    fn check_acyclic<S: Step + ?Sized>(&self, steps: &[Box<S>]) -> Result<(), GraphError> {
        // Kahn's algorithm: whatever cannot be ordered is on a cycle.
        let mut remaining: Vec<usize> = self.depends_on.iter().map(BTreeSet::len).collect();
        let mut ready: Vec<usize> = (0..steps.len()).filter(|&i| remaining[i] == 0).collect();
        let mut ordered = 0;
        while let Some(i) = ready.pop() {
            ordered += 1;
            for &d in &self.dependents[i] {
                remaining[d] -= 1;
                if remaining[d] == 0 {
                    ready.push(d);
                }
            }
        }
        if ordered == steps.len() {
            return Ok(());
        }
        let on_cycle = (0..steps.len())
            .filter(|&i| remaining[i] > 0)
            .map(|i| steps[i].condition().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Err(GraphError::Cycle(on_cycle))
    }
}
