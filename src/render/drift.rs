//! `delivery-operator diff`: the report of an observe-only run (see
//! [`crate::controller::preview`]) rendered for people (per group, Terraform-like `+ ~ -`
//! marks) and for scripts (JSON), with the exit status `kubectl diff` uses.

use serde::Serialize;

use crate::engine::{Outcome, Removal, Report};

/// What a diff found, per group, in the order of the group registry.
#[derive(Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub groups: Vec<GroupDiff>,
    /// Total differences.
    pub changes: usize,
    /// Groups that could not be read (a refused or failed call): their differences are unknown.
    pub errors: usize,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupDiff {
    /// The group's condition type, e.g. `EncryptionKeyReady`.
    pub group: String,
    pub kind: String,
    /// Each difference in words, e.g. `update log group /x: retention from 30 days to 7 days`.
    pub changes: Vec<String>,
    /// Why the group was not compared (an error, or an upstream group that does not exist yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_compared: Option<String>,
}

impl Summary {
    pub fn of(report: &Report) -> Self {
        let mut summary = Summary::default();
        for step in &report.steps {
            let (changes, not_compared) = match &step.outcome {
                Outcome::Applied(_) | Outcome::Kept(_) => (
                    step.outcome
                        .drift()
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                    None,
                ),
                Outcome::Removed(Removal::Gone) => (Vec::new(), None),
                Outcome::Removed(Removal::Pending(what)) => (Vec::new(), Some(what.clone())),
                Outcome::Blocked { waiting_for } if waiting_for.is_empty() => {
                    (Vec::new(), Some("not compared".to_string()))
                }
                Outcome::Blocked { waiting_for } => (
                    Vec::new(),
                    Some(format!(
                        "compared once {} exists (it needs what that group makes)",
                        waiting_for.join(", ")
                    )),
                ),
                Outcome::Failed(f) => {
                    if f.is_error() {
                        summary.errors += 1;
                    }
                    (Vec::new(), Some(format!("{}: {}", f.reason, f.message)))
                }
            };
            summary.changes += changes.len();
            if changes.is_empty() && not_compared.is_none() {
                continue;
            }
            summary.groups.push(GroupDiff {
                group: step.condition.clone(),
                kind: step.kind.clone(),
                changes,
                not_compared,
            });
        }
        summary
    }

    /// `kubectl diff`'s convention: 0 nothing would change, 1 something would, 2 an error.
    pub fn exit_code(&self) -> u8 {
        match (self.errors, self.changes) {
            (0, 0) => 0,
            (0, _) => 1,
            _ => 2,
        }
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        for g in &self.groups {
            out.push_str(&format!("{} ({}):\n", g.group, g.kind));
            for change in &g.changes {
                let mark = match change.split(' ').next() {
                    Some("create") => '+',
                    Some("delete") => '-',
                    _ => '~',
                };
                out.push_str(&format!("  {mark} {change}\n"));
            }
            if let Some(why) = &g.not_compared {
                out.push_str(&format!("  ? {why}\n"));
            }
        }
        out.push_str(&match (self.changes, self.errors) {
            (0, 0) => "No changes: AWS matches the manifest.\n".to_string(),
            (n, 0) => format!("{n} change(s) would be made.\n"),
            (n, e) => format!("{n} change(s) found; {e} group(s) could not be read.\n"),
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Action, Applied, Drift, Failure, StepReport, Values};

    fn step(condition: &str, outcome: Outcome) -> StepReport {
        StepReport {
            condition: condition.into(),
            kind: "thing".into(),
            wanted: true,
            outcome,
        }
    }

    fn observed(drift: Vec<Drift>) -> Outcome {
        Outcome::Applied(Applied {
            action: Action::Unchanged,
            values: Values::new(),
            owned: Vec::new(),
            progress: None,
            note: None,
            drift,
        })
    }

    #[test]
    fn nothing_to_change_exits_zero() {
        let report = Report {
            steps: vec![step("A", observed(vec![]))],
            values: Values::new(),
        };
        let s = Summary::of(&report);
        assert_eq!(s.exit_code(), 0);
        assert_eq!(s.text(), "No changes: AWS matches the manifest.\n");
    }

    #[test]
    fn changes_exit_one_and_are_marked_per_group() {
        let report = Report {
            steps: vec![
                step(
                    "A",
                    observed(vec![
                        Drift::create("log group /a"),
                        Drift::value("log group /b", "retention", "30 days", "7 days"),
                    ]),
                ),
                step("B", Outcome::Kept(vec![Drift::delete("IAM role r")])),
                step(
                    "C",
                    Outcome::Blocked {
                        waiting_for: vec!["A".into()],
                    },
                ),
            ],
            values: Values::new(),
        };
        let s = Summary::of(&report);
        assert_eq!(s.exit_code(), 1);
        assert_eq!(
            s.text(),
            "A (thing):\n  + create log group /a\n  ~ update log group /b: retention from 30 days to 7 days\n\
             B (thing):\n  - delete IAM role r\n\
             C (thing):\n  ? compared once A exists (it needs what that group makes)\n\
             3 change(s) would be made.\n"
        );
    }

    #[test]
    fn an_unreadable_group_exits_two() {
        let report = Report {
            steps: vec![step(
                "A",
                Outcome::Failed(Failure::terminal("AccessDenied", "no kms:DescribeKey")),
            )],
            values: Values::new(),
        };
        let s = Summary::of(&report);
        assert_eq!((s.exit_code(), s.errors), (2, 1));
        assert!(s.text().contains("? AccessDenied: no kms:DescribeKey"));
    }
}
