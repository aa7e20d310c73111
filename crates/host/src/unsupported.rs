//! The Spin interfaces this host does not serve yet: outbound MQTT and LLM. They are
//! linked so every Spin 2 component loads; each
//! `open` (or LLM call) answers with the interface's own error variant and a message
//! saying so, never a trap. No connection can be created, so the per-connection
//! methods are unreachable: their handle type has no values.

use crate::CapabilitiesCtx;
use crate::bindings::fermyon::spin::{llm, mqtt};
use wasmtime::component::Resource;

/// The resource type of a connection that can never be opened.
pub enum NeverOpened {}

fn not_supported(what: &str) -> String {
    format!("{what} is not supported by this host yet")
}

impl CapabilitiesCtx<'_> {
    /// A connection handle cannot exist; this only fails for a handle the table does not
    /// hold (which wasmtime already rules out).
    fn never<R>(&self, handle: &Resource<NeverOpened>) -> wasmtime::Result<R> {
        match *self.table.get(handle)? {}
    }
}

impl mqtt::Host for CapabilitiesCtx<'_> {}

impl mqtt::HostConnection for CapabilitiesCtx<'_> {
    async fn open(
        &mut self,
        _address: String,
        _username: String,
        _password: String,
        _keep_alive_interval_in_secs: u64,
    ) -> wasmtime::Result<Result<Resource<NeverOpened>, mqtt::Error>> {
        Ok(Err(mqtt::Error::Other(not_supported("outbound mqtt"))))
    }
    async fn publish(
        &mut self,
        c: Resource<NeverOpened>,
        _: String,
        _: Vec<u8>,
        _: mqtt::Qos,
    ) -> wasmtime::Result<Result<(), mqtt::Error>> {
        self.never(&c)
    }
    async fn drop(&mut self, c: Resource<NeverOpened>) -> wasmtime::Result<()> {
        self.never(&c)
    }
}

impl llm::Host for CapabilitiesCtx<'_> {
    async fn infer(
        &mut self,
        _model: String,
        _prompt: String,
        _params: Option<llm::InferencingParams>,
    ) -> wasmtime::Result<Result<llm::InferencingResult, llm::Error>> {
        Ok(Err(llm::Error::RuntimeError(
            "no LLM backend configured".to_owned(),
        )))
    }
    async fn generate_embeddings(
        &mut self,
        _model: String,
        _text: Vec<String>,
    ) -> wasmtime::Result<Result<llm::EmbeddingsResult, llm::Error>> {
        Ok(Err(llm::Error::RuntimeError(
            "no LLM backend configured".to_owned(),
        )))
    }
}
