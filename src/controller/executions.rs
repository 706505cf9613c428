//! The pipeline's last execution, for `status.lastExecution` and `kubectl get`. Read after each
//! run; while an execution is in progress it is looked at again every `--execution-poll-seconds`
//! (two calls, nothing else of the pipeline), and not at all for this when idle.

use crate::api::{LastExecution, StageStatus};
use crate::aws::{AwsResultExt, AwsSession};
use crate::engine::Failure;

pub fn in_progress(execution: &LastExecution) -> bool {
    execution.status == "InProgress" || execution.status == "Stopping"
}

fn rfc3339(t: &aws_smithy_types::DateTime) -> Option<String> {
    t.fmt(aws_smithy_types::date_time::Format::DateTime).ok()
}

/// The most recent execution of `pipeline` with each stage's status in it, or None when it
/// never ran.
pub async fn last(aws: &AwsSession, pipeline: &str) -> Result<Option<LastExecution>, Failure> {
    let codepipeline = aws.codepipeline();
    let executions = codepipeline
        .list_pipeline_executions()
        .pipeline_name(pipeline)
        .max_results(1)
        .send()
        .await
        .aws("codepipeline:ListPipelineExecutions")?;
    let Some(summary) = executions.pipeline_execution_summaries().first() else {
        return Ok(None);
    };
    let id = summary
        .pipeline_execution_id()
        .unwrap_or_default()
        .to_string();
    let state = codepipeline
        .get_pipeline_state()
        .name(pipeline)
        .send()
        .await
        .aws("codepipeline:GetPipelineState")?;
    // A stage's latest execution may belong to an earlier run (stages after a failure did not
    // run this time): those show as not run.
    let stages = state
        .stage_states()
        .iter()
        .map(|stage| {
            let status = stage
                .latest_execution()
                .filter(|e| e.pipeline_execution_id() == id)
                .map_or("NotRun".to_string(), |e| e.status().as_str().to_string());
            StageStatus {
                name: stage.stage_name().unwrap_or_default().to_string(),
                status,
            }
        })
        .collect();
    Ok(Some(LastExecution {
        status: summary
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        start_time: summary.start_time().and_then(rfc3339),
        trigger: summary
            .trigger()
            .and_then(|t| t.trigger_type())
            .map(|t| t.as_str().to_string()),
        stages,
        id,
    }))
}
