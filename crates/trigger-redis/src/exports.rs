//! The Redis message handler a component exports, in either form Spin apps use; this
//! crate's own bindings, built on the component the engine linked.

use wasmtime::Store;
use wasmtime::component::InstancePre;
use wisp_engine::Host;

// The generated export accessors use `unsafe` internally (TypedFunc::new_unchecked on
// types bindgen has already checked); the workspace denies `unsafe_code` for our code.
#[allow(unsafe_code, missing_docs)]
mod spin {
    wasmtime::component::bindgen!({
        path: "../../wit/triggers",
        world: "wisp:triggers/inbound-redis-spin",
        exports: { default: async },
    });
}

#[allow(unsafe_code, missing_docs)]
mod v3 {
    wasmtime::component::bindgen!({
        path: "../../wit/triggers",
        world: "wisp:triggers/inbound-redis-v3",
        exports: { default: async | store },
    });
}

/// A component's Redis message handler, pre-linked.
#[derive(Clone)]
pub(crate) enum RedisHandler {
    /// `fermyon:spin/inbound-redis` (spin-sdk up to 5.x, `#[redis_component]`).
    Spin(spin::InboundRedisSpinPre<Host>),
    /// `spin:redis/inbound-redis@3.0.0` (spin-sdk 7, `#[redis_subscriber]`, WASI 0.3).
    V3(v3::InboundRedisV3Pre<Host>),
}

impl RedisHandler {
    /// The handler `pre` exports, preferring the newer form when it has both.
    pub(crate) fn detect(pre: &InstancePre<Host>) -> Option<Self> {
        if let Ok(v3) = v3::InboundRedisV3Pre::new(pre.clone()) {
            return Some(Self::V3(v3));
        }
        spin::InboundRedisSpinPre::new(pre.clone())
            .ok()
            .map(Self::Spin)
    }

    /// Instantiates the handler in `store` and calls it. The outer error is a trap; the
    /// inner one is the handler's own error, as text.
    pub(crate) async fn call(
        self,
        store: &mut Store<Host>,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Self::V3(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                let result = store
                    .run_concurrent(async move |accessor| {
                        instance
                            .spin_redis_inbound_redis()
                            .call_handle_message(accessor, payload)
                            .await
                    })
                    .await??;
                Ok(result.map_err(|e| format!("{e:?}")))
            }
            Self::Spin(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                let result = instance
                    .fermyon_spin_inbound_redis()
                    .call_handle_message(&mut *store, &payload)
                    .await?;
                Ok(result.map_err(|e| format!("{e:?}")))
            }
        }
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

    /// The unversioned `fermyon:spin/redis-types` is defined twice, for the exported
    /// `inbound-redis` here and for the imported Spin 1.x `redis` in `wit/spin1`: the same
    /// interface, whitespace aside.
    #[test]
    fn both_copies_of_the_spin1_redis_types_match() {
        fn redis_types(wit: &str) -> String {
            let start = wit.find("interface redis-types {").expect("redis-types");
            let end = start + wit[start..].find("\n}").expect("its end");
            wit[start..end].split_whitespace().collect()
        }
        assert_eq!(
            redis_types(include_str!(
                "../../../wit/triggers/deps/fermyon-spin-unversioned/inbound-redis.wit"
            )),
            redis_types(include_str!(
                "../../../wit/spin1/deps/fermyon-spin-unversioned/redis.wit"
            )),
        );
    }
}
