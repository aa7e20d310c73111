//! The one Spin interface this host does not serve: LLM (2.0.0 and Spin 1.x's unversioned
//! one). It is linked so every Spin 1 and 2
//! component loads; each call answers the interface's own error, "no LLM backend
//! configured", never a trap.

use crate::bindings::fermyon::spin::llm;
use crate::capability::Capability;
use crate::spin1_bindings::fermyon::spin::llm as llm_v1;
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
        llm::add_to_linker::<T, Capabilities>(linker, crate::view)?;
        llm_v1::add_to_linker::<T, Capabilities>(linker, crate::view)
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

/// Spin 1.x's `fermyon:spin/llm`, answered the same way.
impl llm_v1::Host for CapabilitiesCtx<'_> {
    async fn infer(
        &mut self,
        _model: String,
        _prompt: String,
        _params: Option<llm_v1::InferencingParams>,
    ) -> wasmtime::Result<Result<llm_v1::InferencingResult, llm_v1::Error>> {
        Ok(Err(llm_v1::Error::RuntimeError(
            "no LLM backend configured".to_owned(),
        )))
    }

    async fn generate_embeddings(
        &mut self,
        _model: String,
        _text: Vec<String>,
    ) -> wasmtime::Result<Result<llm_v1::EmbeddingsResult, llm_v1::Error>> {
        Ok(Err(llm_v1::Error::RuntimeError(
            "no LLM backend configured".to_owned(),
        )))
    }
}
