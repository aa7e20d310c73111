//! The Spin interfaces this host does not serve yet:
//! PostgreSQL (`fermyon:spin@2.0.0`, `spin:postgres@3.0.0` and `@4.x`), MySQL and LLM. They are linked so every Spin 2 component loads; each
//! `open` (or LLM call) answers with the interface's own error variant and a message
//! saying so, never a trap. No connection can be created, so the per-connection
//! methods are unreachable: their handle type has no values.

use crate::bindings::fermyon::spin::{llm, mysql, postgres, rdbms_types};
use crate::bindings::spin::postgres3_0_0::postgres as pg3;
use crate::bindings::spin::postgres4_2_0::postgres as pg4;
use crate::{Capabilities, CapabilitiesCtx};
use wasmtime::component::{Accessor, FutureReader, Resource, StreamReader};

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

/// The `HostConnection` of a relational-database interface that is not served: `open`
/// answers `connection-failed`; no connection exists for the other methods to act on.
/// (`$executed` is what `execute` returns: rows changed, or nothing for MySQL.)
macro_rules! unsupported_rdbms_connection {
    ($connection:path, $types:ident, $what:literal, $executed:ty) => {
        impl $connection for CapabilitiesCtx<'_> {
            async fn open(
                &mut self,
                _address: String,
            ) -> wasmtime::Result<Result<Resource<NeverOpened>, $types::Error>> {
                Ok(Err($types::Error::ConnectionFailed(not_supported($what))))
            }
            async fn query(
                &mut self,
                c: Resource<NeverOpened>,
                _: String,
                _: Vec<$types::ParameterValue>,
            ) -> wasmtime::Result<Result<$types::RowSet, $types::Error>> {
                self.never(&c)
            }
            async fn execute(
                &mut self,
                c: Resource<NeverOpened>,
                _: String,
                _: Vec<$types::ParameterValue>,
            ) -> wasmtime::Result<Result<$executed, $types::Error>> {
                self.never(&c)
            }
            async fn drop(&mut self, c: Resource<NeverOpened>) -> wasmtime::Result<()> {
                self.never(&c)
            }
        }
    };
}

unsupported_rdbms_connection!(
    postgres::HostConnection,
    rdbms_types,
    "outbound postgres",
    u64
);
unsupported_rdbms_connection!(mysql::HostConnection, rdbms_types, "outbound mysql", ());
unsupported_rdbms_connection!(pg3::HostConnection, pg3, "outbound postgres", u64);
unsupported_rdbms_connection!(pg4::HostConnection, pg4, "outbound postgres", u64);

impl rdbms_types::Host for CapabilitiesCtx<'_> {}

impl postgres::Host for CapabilitiesCtx<'_> {}

impl mysql::Host for CapabilitiesCtx<'_> {}

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

/// `spin:postgres@4.x` `connection-builder`: its constructor cannot fail, so the
/// resource exists; `build` then answers that PostgreSQL is not served.
pub struct PostgresBuilder;

fn postgres_unsupported<E>(error: impl FnOnce(String) -> E) -> E {
    error(not_supported("outbound postgres"))
}

impl pg3::Host for CapabilitiesCtx<'_> {}

impl pg4::Host for CapabilitiesCtx<'_> {}

impl pg4::HostConnectionBuilder for CapabilitiesCtx<'_> {
    async fn new(&mut self, _address: String) -> wasmtime::Result<Resource<PostgresBuilder>> {
        if !self.state.reserve_handle() {
            wasmtime::bail!(
                "this instance already holds {} open handles; drop some first",
                crate::MAX_OPEN_HANDLES
            );
        }
        Ok(self.table.push(PostgresBuilder)?)
    }
    async fn set_ca_root(
        &mut self,
        _builder: Resource<PostgresBuilder>,
        _certificate: String,
    ) -> wasmtime::Result<Result<(), pg4::Error>> {
        Ok(Err(postgres_unsupported(pg4::Error::ConnectionFailed)))
    }
    async fn build(
        &mut self,
        _builder: Resource<PostgresBuilder>,
    ) -> wasmtime::Result<Result<Resource<NeverOpened>, pg4::Error>> {
        Ok(Err(postgres_unsupported(pg4::Error::ConnectionFailed)))
    }
    async fn drop(&mut self, builder: Resource<PostgresBuilder>) -> wasmtime::Result<()> {
        self.table.delete(builder)?;
        self.state.release_handle();
        Ok(())
    }
}

impl<T> pg4::HostConnectionBuilderWithStore<T> for Capabilities {
    async fn build_async(
        _accessor: &Accessor<T, Self>,
        _builder: Resource<PostgresBuilder>,
    ) -> wasmtime::Result<Result<Resource<NeverOpened>, pg4::Error>> {
        Ok(Err(postgres_unsupported(pg4::Error::ConnectionFailed)))
    }
}

impl<T> pg4::HostConnectionWithStore<T> for Capabilities {
    async fn open_async(
        _accessor: &Accessor<T, Self>,
        _address: String,
    ) -> wasmtime::Result<Result<Resource<NeverOpened>, pg4::Error>> {
        Ok(Err(postgres_unsupported(pg4::Error::ConnectionFailed)))
    }
    async fn query_async(
        accessor: &Accessor<T, Self>,
        c: Resource<NeverOpened>,
        _: String,
        _: Vec<pg4::ParameterValue>,
    ) -> wasmtime::Result<
        Result<
            (
                Vec<pg4::Column>,
                StreamReader<pg4::Row>,
                FutureReader<Result<(), pg4::Error>>,
            ),
            pg4::Error,
        >,
    > {
        accessor.with(|mut access| access.get().never(&c))
    }
    async fn execute_async(
        accessor: &Accessor<T, Self>,
        c: Resource<NeverOpened>,
        _: String,
        _: Vec<pg4::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, pg4::Error>> {
        accessor.with(|mut access| access.get().never(&c))
    }
}
