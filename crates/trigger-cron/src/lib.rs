//! The cron trigger, built in (Spin needs the `trigger-cron` plugin for it).
//!
//! Each `[[trigger.cron]]` runs its component on a six- or seven-field schedule (seconds
//! first, UTC), calling the `handle-cron-event` export of the `fermyon:spin-cron@2.0.0`
//! world with the tick's Unix timestamp. A tick that comes while the previous run of the
//! same trigger is still going is skipped with a warning, unless the trigger sets
//! `allow_overlap = true`. Every run is logged with its outcome.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use wasmtime::component::InstancePre;
use wisp_engine::{Host, LoadedApp};
use wisp_telemetry::{EventKind, Span};
use wisp_trigger::{Summary, Trigger, TriggerContext, TriggerError, TriggerType};

/// Configuration of a `cron` trigger, as stored in a LockedApp's `trigger_config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CronTriggerConfig {
    /// Component that handles each tick.
    pub component: String,
    /// Six or seven fields, seconds first.
    pub cron_expression: String,
    /// Whether a tick may start a run while the previous one is still going.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_overlap: bool,
}

// The generated export accessors use `unsafe` internally (TypedFunc::new_unchecked on
// types bindgen has already checked); the workspace denies `unsafe_code` for our code.
#[allow(unsafe_code, missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/triggers",
        world: "wisp:triggers/spin-cron",
        exports: { default: async },
    });
}

use bindings::SpinCronPre;
use bindings::fermyon::spin_cron::cron_types;

/// The `cron` trigger type, for the runtime's registry.
#[derive(Debug, Default, Clone, Copy)]
pub struct CronTriggerType;

const TYPE: &str = "cron";

/// What a component must export for the cron trigger.
const NO_CRON_EXPORT: &str = "does not export `handle-cron-event`; build it against the `fermyon:spin-cron/spin-cron@2.0.0` world, e.g. with spin-cron-sdk's `#[cron_component]`";

impl TriggerType for CronTriggerType {
    fn name(&self) -> &'static str {
        TYPE
    }

    fn check_component(&self, component: &InstancePre<Host>) -> Result<(), String> {
        SpinCronPre::new(component.clone()).map(drop).map_err(|_| {
            "a cron trigger needs `handle-cron-event` of `fermyon:spin-cron@2.0.0`; build it against the cron plugin's world (wisp new cron-rust shows how)".to_owned()
        })
    }

    fn build(&self, context: &TriggerContext<'_>) -> Result<Arc<dyn Trigger>, TriggerError> {
        Ok(Arc::new(CronTrigger::new(context)?))
    }
}

/// One scheduled trigger, for summaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSummary {
    /// Trigger id.
    pub trigger: String,
    /// The expression as written.
    pub cron_expression: String,
    /// The component it runs.
    pub component: String,
    /// The next tick (UTC), if the schedule has one.
    pub next: Option<DateTime<Utc>>,
}

struct Job {
    trigger: String,
    component: String,
    handler: SpinCronPre<Host>,
    expression: String,
    schedule: cron::Schedule,
    allow_overlap: bool,
    running: AtomicBool,
}

/// An app's cron triggers, ready to run.
pub struct CronTrigger {
    app: Arc<LoadedApp>,
    jobs: Vec<Arc<Job>>,
}

impl CronTrigger {
    /// Reads and checks the app's cron triggers: each schedule parses and each
    /// component exports `handle-cron-event`.
    pub fn new(context: &TriggerContext<'_>) -> Result<Self, TriggerError> {
        let app = context.app.clone();
        let mut jobs = Vec::new();
        for (trigger, config) in context.configs::<CronTriggerConfig>(TYPE)? {
            let error = |message: String| TriggerError::Invalid {
                trigger_type: TYPE,
                trigger: trigger.id.clone(),
                message,
            };
            let component = app.component(&config.component).ok_or_else(|| {
                error(format!(
                    "component `{}` is not defined by the app",
                    config.component
                ))
            })?;
            let handler = SpinCronPre::new(component.instance_pre()).map_err(|_| {
                error(format!(
                    "component `{}` {NO_CRON_EXPORT} (it exports {})",
                    config.component,
                    component.exports_summary()
                ))
            })?;
            let schedule = cron::Schedule::from_str(&config.cron_expression).map_err(|e| {
                error(format!(
                    "invalid cron_expression `{}`: {e}",
                    config.cron_expression
                ))
            })?;
            jobs.push(Arc::new(Job {
                trigger: trigger.id.clone(),
                component: config.component.clone(),
                handler,
                expression: config.cron_expression.clone(),
                schedule,
                allow_overlap: config.allow_overlap,
                running: AtomicBool::new(false),
            }));
        }
        Ok(Self { app, jobs })
    }

    /// Whether the app has any cron triggers.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Every schedule with its next tick, for the start-up summary.
    pub fn schedules(&self) -> Vec<ScheduleSummary> {
        self.jobs
            .iter()
            .map(|job| ScheduleSummary {
                trigger: job.trigger.clone(),
                cron_expression: job.expression.clone(),
                component: job.component.clone(),
                next: job.schedule.upcoming(Utc).next(),
            })
            .collect()
    }

    /// Runs the schedules until `shutdown` resolves; then waits up to `grace` for runs
    /// still going.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>, grace: Duration) {
        let runs = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        let mut timers = JoinSet::new();
        for job in &self.jobs {
            let job = job.clone();
            let app = self.app.clone();
            let runs = runs.clone();
            timers.spawn(async move { schedule_loop(app, job, runs).await });
        }
        shutdown.await;
        timers.abort_all();
        let mut runs = runs.lock().await;
        let drain = async { while runs.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!(
                "shutdown grace period of {grace:?} elapsed; abandoning cron runs still going"
            );
        }
    }
}

async fn schedule_loop(
    app: Arc<LoadedApp>,
    job: Arc<Job>,
    runs: Arc<tokio::sync::Mutex<JoinSet<()>>>,
) {
    let mut last = Utc::now();
    loop {
        let Some(next) = job.schedule.after(&last).next() else {
            tracing::info!(
                "cron trigger `{}`: schedule `{}` has no more ticks",
                job.trigger,
                job.expression
            );
            return;
        };
        // The timer runs on the monotonic clock; the schedule is wall-clock time. Sleep
        // again if the wall clock says it is still early (it was set back, or the timer
        // woke a little soon), so a tick never fires before its time.
        loop {
            let wait = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            if wait.is_zero() {
                break;
            }
            tokio::time::sleep(wait).await;
        }
        // After a suspend or a clock jump forward, ticks already past are not replayed in
        // a burst: the next one is computed from now, and the skipped ones are counted.
        let now = Utc::now();
        let missed = job
            .schedule
            .after(&next)
            .take_while(|tick| *tick < now - chrono::Duration::seconds(1))
            .take(10_000)
            .count();
        if missed > 0 {
            tracing::warn!(
                "cron trigger `{}`: {missed} tick(s) before {now} were missed (the machine was suspended or the clock jumped); running the one at {next} only",
                job.trigger
            );
        }
        last = if missed > 0 { now } else { next };
        if !job.allow_overlap && job.running.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                "cron trigger `{}`: skipped the tick at {next}: the previous run of `{}` is still going (set allow_overlap = true to run them side by side)",
                job.trigger,
                job.component
            );
            continue;
        }
        let guard = RunningGuard {
            job: job.clone(),
            owns_flag: !job.allow_overlap,
        };
        let app = app.clone();
        let job = job.clone();
        let mut runs = runs.lock().await;
        while runs.try_join_next().is_some() {}
        runs.spawn(async move {
            // Clears the flag however the run ends: finished, panicked or aborted.
            let _guard = guard;
            run_once(&app, &job, next).await;
        });
    }
}

/// Marks the end of a run when dropped.
struct RunningGuard {
    job: Arc<Job>,
    owns_flag: bool,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        if self.owns_flag {
            self.job.running.store(false, Ordering::Release);
        }
    }
}

async fn run_once(app: &LoadedApp, job: &Job, tick: DateTime<Utc>) {
    let Some(component) = app.component(&job.component) else {
        return;
    };
    let started = Instant::now();
    let timestamp = u64::try_from(tick.timestamp()).unwrap_or(0);
    let handler = job.handler.clone();
    let span = component
        .tracing()
        .event_span(EventKind::Scheduled, || format!("cron {}", job.expression))
        .map(|mut span| {
            span.set("wisp.app", component.app_name());
            span.set("wisp.component", job.component.as_str());
            span.set("wisp.trigger", job.trigger.as_str());
            span.set("wisp.cron.expression", job.expression.as_str());
            span.set(
                "wisp.cron.tick",
                i64::try_from(timestamp).unwrap_or(i64::MAX),
            );
            span
        });
    let trace_id = wisp_telemetry::trace_id(span.as_ref());
    let trace_suffix = wisp_telemetry::trace_suffix(trace_id.as_deref());
    let call = component
        .run_event(
            "cron",
            span.as_ref().map(Span::parent),
            Box::new(move |store| {
                Box::pin(async move {
                    let instance = handler.instantiate_async(&mut *store).await?;
                    let result = instance
                        .call_handle_cron_event(&mut *store, cron_types::Metadata { timestamp })
                        .await?;
                    Ok(result.map_err(|cron_types::Error::Other(message)| message))
                })
            }),
        )
        .await;
    if let Some(mut span) = span {
        match &call {
            Ok(Ok(())) => {}
            Ok(Err(error)) => span.fail(error.clone()),
            Err(err) => span.fail(err.reason()),
        }
    }
    match call {
        Ok(Ok(())) => tracing::info!(
            trace_id = trace_id.as_deref(),
            "cron trigger `{}`: `{}` ran for the tick at {tick} in {:.1?}: ok{trace_suffix}",
            job.trigger,
            job.component,
            started.elapsed()
        ),
        Ok(Err(error)) => tracing::error!(
            component = %job.component,
            trace_id = trace_id.as_deref(),
            "cron trigger `{}`: `{}` returned an error for the tick at {tick}: {error}{trace_suffix}",
            job.trigger,
            job.component
        ),
        Err(err) => {
            let reason = match &err.fault {
                Some(fault) => fault.to_string(),
                None => format!("failed: {}", err.message),
            };
            tracing::error!(
                component = %job.component,
                trace_id = trace_id.as_deref(),
                "cron trigger `{}`: `{}` {reason} (tick at {tick}){trace_suffix}",
                job.trigger,
                job.component
            )
        }
    }
}

impl Trigger for CronTrigger {
    fn summary(&self) -> Summary {
        Summary {
            heading: "Cron schedules (UTC):".to_owned(),
            lines: self
                .schedules()
                .into_iter()
                .map(|schedule| {
                    let next = schedule
                        .next
                        .map_or_else(|| "no further ticks".to_owned(), |t| format!("next {t}"));
                    format!(
                        "`{}`  ->  {}  ({next})",
                        schedule.cron_expression, schedule.component
                    )
                })
                .collect(),
        }
    }

    fn log_summary(&self) {
        for schedule in self.schedules() {
            tracing::info!(
                event = "cron_schedule",
                cron_expression = %schedule.cron_expression,
                component = %schedule.component,
                "cron schedule"
            );
        }
    }

    fn run(
        self: Arc<Self>,
        shutdown: BoxFuture<'static, ()>,
        grace: Duration,
    ) -> BoxFuture<'static, ()> {
        Box::pin(CronTrigger::run(self, shutdown, grace))
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}
