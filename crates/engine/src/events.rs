//! Calling event-triggered components: Redis messages and cron ticks.
//!
//! The export each form needs is detected when a component loads (like the HTTP
//! export), so a trigger can refuse a component that cannot handle its events before
//! any event arrives.

use crate::Host;
use wasmtime::component::InstancePre;

// The generated export accessors use `unsafe` internally (TypedFunc::new_unchecked on
// types bindgen has already checked); the workspace denies `unsafe_code` for our code.
#[allow(unsafe_code, missing_docs)]
mod redis_spin {
    wasmtime::component::bindgen!({
        path: "../../wit/triggers",
        world: "wisp:triggers/inbound-redis-spin",
        exports: { default: async },
    });
}

#[allow(unsafe_code, missing_docs)]
mod redis_v3 {
    wasmtime::component::bindgen!({
        path: "../../wit/triggers",
        world: "wisp:triggers/inbound-redis-v3",
        exports: { default: async | store },
    });
}

#[allow(unsafe_code, missing_docs)]
mod cron {
    wasmtime::component::bindgen!({
        path: "../../wit/triggers",
        world: "wisp:triggers/spin-cron",
        exports: { default: async },
    });
}

/// Which Redis message handler a component exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisExport {
    /// `fermyon:spin/inbound-redis` (spin-sdk up to 5.x, `#[redis_component]`).
    Spin,
    /// `spin:redis/inbound-redis@3.0.0` (spin-sdk 7, `#[redis_subscriber]`, WASI 0.3).
    V3,
}

impl std::fmt::Display for RedisExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Spin => "fermyon:spin/inbound-redis",
            Self::V3 => "spin:redis/inbound-redis@3.0.0",
        })
    }
}

/// The event exports of one component, pre-linked.
pub(crate) struct EventExports {
    redis_spin: Option<redis_spin::InboundRedisSpinPre<Host>>,
    redis_v3: Option<redis_v3::InboundRedisV3Pre<Host>>,
    cron: Option<cron::SpinCronPre<Host>>,
}

impl EventExports {
    pub(crate) fn detect(pre: &InstancePre<Host>) -> Self {
        Self {
            redis_spin: redis_spin::InboundRedisSpinPre::new(pre.clone()).ok(),
            redis_v3: redis_v3::InboundRedisV3Pre::new(pre.clone()).ok(),
            cron: cron::SpinCronPre::new(pre.clone()).ok(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.redis().is_none() && !self.has_cron()
    }

    /// The Redis handler, preferring the newer form when a component has both.
    pub(crate) fn redis(&self) -> Option<RedisExport> {
        if self.redis_v3.is_some() {
            Some(RedisExport::V3)
        } else if self.redis_spin.is_some() {
            Some(RedisExport::Spin)
        } else {
            None
        }
    }

    pub(crate) fn has_cron(&self) -> bool {
        self.cron.is_some()
    }

    /// Runs the Redis handler on a fresh instance in `store`. The outer error is a
    /// trap; the inner one is the handler's own error, as text.
    pub(crate) async fn handle_redis_message(
        &self,
        store: &mut wasmtime::Store<Host>,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        if let Some(pre) = &self.redis_v3 {
            let instance = pre.instantiate_async(&mut *store).await?;
            let result = store
                .run_concurrent(async move |accessor| {
                    instance
                        .spin_redis_inbound_redis()
                        .call_handle_message(accessor, payload)
                        .await
                })
                .await??;
            return Ok(result.map_err(|e| format!("{e:?}")));
        }
        let Some(pre) = &self.redis_spin else {
            return Err(wasmtime::Error::msg(
                "the component exports no redis message handler",
            ));
        };
        let instance = pre.instantiate_async(&mut *store).await?;
        let result = instance
            .fermyon_spin_inbound_redis()
            .call_handle_message(&mut *store, &payload)
            .await?;
        Ok(result.map_err(|e| format!("{e:?}")))
    }

    /// Runs the cron handler on a fresh instance in `store`.
    pub(crate) async fn handle_cron_event(
        &self,
        store: &mut wasmtime::Store<Host>,
        timestamp: u64,
    ) -> wasmtime::Result<Result<(), String>> {
        let Some(pre) = &self.cron else {
            return Err(wasmtime::Error::msg(
                "the component exports no handle-cron-event function",
            ));
        };
        let instance = pre.instantiate_async(&mut *store).await?;
        let result = instance
            .call_handle_cron_event(
                &mut *store,
                cron::fermyon::spin_cron::cron_types::Metadata { timestamp },
            )
            .await?;
        Ok(result.map_err(|cron::fermyon::spin_cron::cron_types::Error::Other(message)| message))
    }
}

#[cfg(test)]
mod tests {
    /// `wit/triggers/deps` holds a copy of the host's `spin:redis@3.0.0` package (a
    /// directory cannot be shared between the two WIT roots without a link).
    #[test]
    fn trigger_wit_copy_of_spin_redis_matches_the_host_one() {
        assert_eq!(
            include_str!("../../../wit/triggers/deps/spin-redis-3.0.0/redis.wit"),
            include_str!("../../../wit/deps/spin-redis-3.0.0/redis.wit"),
        );
    }
}
