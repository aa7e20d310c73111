//! The one Spin interface this host does not serve: LLM. It is linked so every Spin 2
//! component loads; each call answers the interface's own error, "no LLM backend
//! configured", never a trap.

use crate::bindings::fermyon::spin::llm;
use crate::capability::Capability;
use crate::{Capabilities, CapabilitiesCtx, CapabilitiesView};
use wasmtime::component::Linker;

/// The LLM capability: linked so Spin 2 components importing it load, answering every
/// call with its error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Llm;

impl Capability for Llm {
    fn name(&self) -> &'static str {
        "llm"
    }

    fn add_to_linker<T: CapabilitiesView + 'static>(
        linker: &mut Linker<T>,
    ) -> wasmtime::Result<()> {
        llm::add_to_linker::<T, Capabilities>(linker, crate::view)
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
