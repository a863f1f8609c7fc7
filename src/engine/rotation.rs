//! Running one subtask's stages under the safe rotation protocol (DESIGN.md):
//! save before change, every stage can run again, verify both ways, give up safely.

use std::sync::Arc;

use super::account::load_account;
use super::context::Engine;
use super::error::Error;
use super::lease::{self, fenced, Claim};
use super::model::{Stage, StageStatus};
use super::recovery::give_up_or_retry;
use super::repo;
use super::stages::{run_stage, Attempt, Done};

/// Runs a claimed subtask from its first unfinished stage to an end or a retry.
pub async fn run(engine: &Arc<Engine>, claim: Claim) {
    let renewal = {
        let (engine, claim) = (engine.clone(), claim.clone());
        tokio::spawn(async move {
            let period = std::time::Duration::from_secs_f64(engine.lease_seconds / 3.0);
            loop {
                tokio::time::sleep(period).await;
                match lease::renew_lease(&engine.pool, &claim, engine.lease_seconds).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!("lease taken over; this worker's writes will be refused");
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot renew lease"),
                }
            }
        })
    };
    if let Err(e) = run_stages(engine, &claim).await {
        tracing::error!(error = %e, "subtask stopped on a database error; it will be resumed when its lease expires");
    }
    renewal.abort();
}

async fn run_stages(engine: &Arc<Engine>, claim: &Claim) -> Result<(), Error> {
    let stages = repo::stage_statuses(&engine.pool, claim.subtask_id).await?;
    // An earlier attempt that got as far as APPLY may have changed the target (a retry
    // keeps APPLY's status for exactly this reason).
    let mut touched = stages
        .iter()
        .any(|(stage, status)| *stage == Stage::Apply && *status != StageStatus::Pending);
    // Without an APPLY (REMEDIATE with a password, set-password) nothing here changes the
    // target: a failure needs no truth-finding, whose logins would only spend the
    // account's lockout budget.
    let applies = stages.iter().any(|(stage, _)| *stage == Stage::Apply);
    let account = match load_account(engine, claim.credential_id).await {
        Ok(a) => a,
        // A database error here is retried like any other; giving up must know `touched`.
        Err(e) => return give_up_or_retry(engine, claim, None, Stage::Validate, e, touched).await,
    };
    let mut attempt = Attempt {
        old_check_due: stages
            .iter()
            .any(|(stage, status)| *stage == Stage::VerifyOldRejected && !status.is_done()),
        ..Attempt::default()
    };
    for (stage, status) in stages {
        if status.is_done() {
            continue;
        }
        let resumed = status == StageStatus::InProgress;
        repo::stage_started(&engine.pool, claim, stage).await?;
        crate::failpoint::hit(&format!("{stage}:before"));
        tracing::debug!(stage = %stage, resumed, "stage started");
        if stage == Stage::Apply {
            // Touch the target only with a fresh lease: a worker that cannot renew must
            // not start a change another worker may be about to make.
            if !lease::renew_lease(&engine.pool, claim, engine.lease_seconds).await? {
                return Err(Error::LostLease(claim.credential_id));
            }
        }
        let started = std::time::Instant::now();
        let outcome = run_stage(
            engine,
            claim,
            &account,
            stage,
            resumed || touched,
            &mut attempt,
        )
        .await;
        crate::metrics::stage_finished(stage.as_str(), &account.platform, started.elapsed());
        match outcome {
            Ok(Done::Recorded) => {}
            Ok(done) => {
                let status = if matches!(done, Done::NotApplicable) {
                    StageStatus::NotApplicable
                } else {
                    StageStatus::Successful
                };
                let mut tx = fenced(&engine.pool, claim).await?;
                repo::stage_finished(&mut tx, claim, stage, status).await?;
                tx.commit().await?;
            }
            Err(e) => {
                // Truth-finding may log in: VERIFY's unused connection is closed first.
                if let Some(line) = attempt.line.take() {
                    line.close().await;
                }
                touched |=
                    applies && (stage > Stage::Apply || (stage == Stage::Apply && e.unresolved));
                return give_up_or_retry(engine, claim, Some(&account), stage, e, touched).await;
            }
        }
        touched |= stage == Stage::Apply;
        crate::failpoint::hit(&format!("{stage}:after"));
        tracing::debug!(stage = %stage, "stage done");
    }
    Ok(())
}
