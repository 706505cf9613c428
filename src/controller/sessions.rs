//! The AWS sessions one pipeline needs: its own (from `spec.credentials`, or the operator's
//! identity), and one per environment in another account, assumed from the pipeline's session
//! (role chaining). Every AssumeRole carries an external ID.

use std::sync::Arc;

use crate::api::DeliveryPipeline;
use crate::aws::{Assume, AwsFactory, AwsSession, SessionKey};
use crate::desired::Env;
use crate::engine::Failure;
use crate::tenancy;

/// The sessions of one reconcile: the pipeline's, and each environment's (the pipeline's own
/// when the environment is in the pipeline account).
#[derive(Clone)]
pub struct Sessions {
    pub pipeline: Result<Arc<AwsSession>, Failure>,
    pub staging: Result<Arc<AwsSession>, Failure>,
    pub production: Result<Arc<AwsSession>, Failure>,
}

impl Sessions {
    /// The session of the account an instance lives in: an environment's, or the pipeline's
    /// (None). What the registry pairs each group instance with.
    pub fn of(&self, env: Option<Env>) -> Result<Arc<AwsSession>, Failure> {
        match env {
            None => self.pipeline.clone(),
            Some(Env::Staging) => self.staging.clone(),
            Some(Env::Production) => self.production.clone(),
        }
    }
}

impl Sessions {
    /// The same sessions for one reconcile (`AwsSession::for_one_reconcile`: one tag read per
    /// account and region for all its steps); environments that share the pipeline's account
    /// keep sharing its session.
    pub fn for_one_reconcile(self) -> Self {
        let mut made: Vec<(Arc<AwsSession>, Arc<AwsSession>)> = Vec::new();
        let mut fresh = |session: Result<Arc<AwsSession>, Failure>| {
            session.map(|shared| {
                if let Some((_, done)) = made.iter().find(|(from, _)| Arc::ptr_eq(from, &shared)) {
                    return done.clone();
                }
                let one = shared.for_one_reconcile();
                made.push((shared, one.clone()));
                one
            })
        };
        Sessions {
            pipeline: fresh(self.pipeline),
            staging: fresh(self.staging),
            production: fresh(self.production),
        }
    }
}

/// Where a pipeline's sessions come from: its namespace and the operator's cluster identity,
/// which make the external ID of every AssumeRole (see `tenancy::external_id`).
#[derive(Clone, Copy)]
pub struct Origin<'a> {
    pub cluster_id: &'a str,
    pub namespace: &'a str,
}

impl Origin<'_> {
    fn external_id(&self) -> String {
        tenancy::external_id(self.cluster_id, self.namespace)
    }
}

fn pipeline_key(dp: &DeliveryPipeline, origin: Origin<'_>, region: &str) -> SessionKey {
    SessionKey {
        region: region.to_string(),
        chain: dp
            .spec
            .credentials
            .iter()
            .map(|c| Assume {
                role_arn: c.role_arn.clone(),
                external_id: origin.external_id(),
            })
            .collect(),
    }
}

/// Opens the pipeline's session; its failure means nothing can be attempted.
pub async fn pipeline(
    aws: &AwsFactory,
    dp: &DeliveryPipeline,
    origin: Origin<'_>,
    region: &str,
) -> Result<Arc<AwsSession>, Failure> {
    aws.session(&pipeline_key(dp, origin, region))
        .await
        .map_err(|e| match &dp.spec.credentials {
            // The spec field names the role the user must fix.
            Some(c) if e.reason == "RoleNotAssumable" || e.reason == "RoleNotAllowed" => Failure {
                reason: "CredentialsRoleNotAssumable".into(),
                ..e.context(&format!("spec.credentials.roleArn {}", c.role_arn))
            },
            _ => e,
        })
}

/// Opens every environment's session (concurrently); a failure affects only that
/// environment's steps.
pub async fn all(
    aws: &AwsFactory,
    dp: &DeliveryPipeline,
    origin: Origin<'_>,
    region: &str,
    pipeline: Arc<AwsSession>,
) -> Sessions {
    let base = pipeline_key(dp, origin, region);
    let environment = |env: Env| {
        let base = base.clone();
        let pipeline = pipeline.clone();
        async move {
            let spec = env.spec(&dp.spec);
            let Some(role_arn) = spec.management_role_arn.clone() else {
                return Ok(pipeline);
            };
            let mut key = base;
            key.chain.push(Assume {
                role_arn: role_arn.clone(),
                external_id: origin.external_id(),
            });
            let session = aws.session(&key).await.map_err(|e| {
                e.context(&format!(
                    "spec.environments.{}.managementRoleArn {role_arn}",
                    env.name()
                ))
            })?;
            match &spec.account_id {
                Some(account) if *account != session.account_id => Err(Failure::terminal(
                    "EnvironmentAccountMismatch",
                    format!(
                        "spec.environments.{}.managementRoleArn {role_arn} resolved to account {}, not accountId {account}",
                        env.name(),
                        session.account_id
                    ),
                )),
                _ => Ok(session),
            }
        }
    };
    let (staging, production) =
        futures::join!(environment(Env::Staging), environment(Env::Production));
    Sessions {
        pipeline: Ok(pipeline),
        staging,
        production,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_assumption_carries_the_derived_external_id() {
        let mut dp: DeliveryPipeline =
            serde_yaml::from_str(include_str!("../../examples/minimal.yaml")).expect("example");
        dp.spec.credentials = Some(crate::api::Credentials {
            role_arn: "arn:aws:iam::111111111111:role/x".into(),
        });
        let origin = |namespace| Origin {
            cluster_id: "c1",
            namespace,
        };
        let key = pipeline_key(&dp, origin("team-a"), "us-east-1");
        assert_eq!(key.chain.len(), 1);
        assert_eq!(key.chain[0].external_id, "delivery-operator:c1:team-a");
        assert_ne!(
            pipeline_key(&dp, origin("team-b"), "us-east-1").chain[0].external_id,
            key.chain[0].external_id
        );
    }
}
