//! Typed keys of the values steps hand to each other (and to `status.outputs`).

use std::collections::BTreeMap;

/// A value one step provides and others need, optionally per environment (e.g. the staging
/// cluster ARN is `CLUSTER_ARN.scoped("staging")`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub name: &'static str,
    pub scope: Option<&'static str>,
}

impl Key {
    pub const fn new(name: &'static str) -> Self {
        Self { name, scope: None }
    }

    pub const fn scoped(self, scope: &'static str) -> Self {
        Self {
            name: self.name,
            scope: Some(scope),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.scope {
            None => f.write_str(self.name),
            Some(scope) => write!(f, "{scope}.{}", self.name),
        }
    }
}

pub type Values = BTreeMap<Key, String>;
