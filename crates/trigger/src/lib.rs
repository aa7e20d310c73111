//! The trigger seam.
//!
//! A trigger turns events (HTTP requests, Redis messages, cron ticks, …) into calls of a
//! component, each in a fresh instance. Each trigger type lives in its own crate
//! (`wisp-trigger-http`, `wisp-trigger-redis`, `wisp-trigger-cron`) and implements
//! [`TriggerType`]: it reads its own `trigger_config` from the LockedApp, checks that each
//! component it calls exports what it needs (its own `bindgen!` over its world), and
//! builds a [`Trigger`] that runs until shutdown. Events run through the engine's
//! [`LoadedComponent::run_event`](wisp_engine::LoadedComponent::run_event), which applies
//! the instance slots, memory budget, memory cap and deadline.
//!
//! The runtime (`wisp-runtime`) keeps a list of trigger types and knows nothing else
//! about them: adding one is a new crate, its `[[trigger.<type>]]` table in the manifest,
//! and one registration line.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::InstancePre;
use wisp_app::LockedTrigger;
use wisp_engine::{Host, LoadedApp};

pub use futures::future::BoxFuture;

/// Why a trigger could not be built from an app.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// A trigger's configuration in the LockedApp does not parse.
    #[error("{trigger_type} trigger `{trigger}`: invalid configuration: {source}")]
    Config {
        /// The trigger type.
        trigger_type: &'static str,
        /// Trigger id.
        trigger: String,
        /// What the parser said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A trigger cannot run as configured (a missing component or export, a bad
    /// schedule or address, …). The message may quote names from the component's own
    /// bytes (its exports), so it is shown through [`wisp_engine::printable`].
    #[error("{trigger_type} trigger `{trigger}`: {}", wisp_engine::printable(.message))]
    Invalid {
        /// The trigger type.
        trigger_type: &'static str,
        /// Trigger id.
        trigger: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// What a trigger type gets to build an app's triggers of its type.
pub struct TriggerContext<'a> {
    /// The loaded app.
    pub app: &'a Arc<LoadedApp>,
    /// The app's triggers of this type, in manifest order (at least one).
    pub triggers: Vec<&'a LockedTrigger>,
    /// Expands `{{ variable }}` references to the app's variables.
    pub expand: &'a (dyn Fn(&str) -> Result<String, String> + Sync),
}

impl TriggerContext<'_> {
    /// Each trigger with its configuration decoded as `C`.
    pub fn configs<C: serde::de::DeserializeOwned>(
        &self,
        trigger_type: &'static str,
    ) -> Result<Vec<(&LockedTrigger, C)>, TriggerError> {
        self.triggers
            .iter()
            .map(|trigger| {
                serde_json::from_value(trigger.trigger_config.clone())
                    .map(|config| (*trigger, config))
                    .map_err(|source| TriggerError::Config {
                        trigger_type,
                        trigger: trigger.id.clone(),
                        source: Box::new(source),
                    })
            })
            .collect()
    }
}

/// A kind of trigger: `http`, `redis`, `cron`, …
pub trait TriggerType: Send + Sync + 'static {
    /// The `trigger_type` it handles in a LockedApp.
    fn name(&self) -> &'static str;

    /// Whether a component exports what this trigger type calls; `Err` is a phrase
    /// saying what the trigger needs and how to build it ("a cron trigger needs …; build
    /// it …"). Used by `wisp doctor`.
    fn check_component(&self, component: &InstancePre<Host>) -> Result<(), String>;

    /// Builds the app's triggers of this type: decodes their configuration and checks
    /// every component they name.
    fn build(&self, context: &TriggerContext<'_>) -> Result<Arc<dyn Trigger>, TriggerError>;
}

/// An app's triggers of one type, built and ready to run.
pub trait Trigger: Send + Sync + 'static {
    /// The start-up summary, for people: a heading and one line per item.
    fn summary(&self) -> Summary;

    /// The start-up summary as structured log events (`--json`), one per item.
    fn log_summary(&self);

    /// Runs until `shutdown` resolves, then gives the events in progress `grace` to
    /// finish. A trigger driven from outside (HTTP, served by a front door) just waits.
    fn run(
        self: Arc<Self>,
        shutdown: BoxFuture<'static, ()>,
        grace: Duration,
    ) -> BoxFuture<'static, ()>;

    /// The concrete trigger, for an embedder that needs more than this trait (the HTTP
    /// trigger's request handler).
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// A trigger's start-up summary for people.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The heading (`Redis subscriptions:`); no section is printed without lines.
    pub heading: String,
    /// One line per item.
    pub lines: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::TriggerError;

    #[test]
    fn invalid_triggers_escape_what_the_component_chose() {
        let error = TriggerError::Invalid {
            trigger_type: "redis",
            trigger: "t".to_owned(),
            message: "component `c` exports `\u{1b}[2Jhandler\u{202e}`".to_owned(),
        };
        assert_eq!(
            error.to_string(),
            "redis trigger `t`: component `c` exports `\\u{1b}[2Jhandler\\u{202e}`"
        );
    }
}
