//! Spin 1.x's `fermyon:spin/mysql` (unversioned): an address per call. Each call opens
//! a `@2.0.0` connection (a pooled one when the app has it idle), runs the statement on it
//! and gives it back, so grants, TLS and the pool work as for `@2.0.0`. Its types are
//! 2.0.0's `rdbms-types`; only the error type differs.

use super::MysqlConnection;
use crate::CapabilitiesCtx;
use crate::bindings::fermyon::spin::{mysql as v2, rdbms_types as v2t};
use crate::spin1_bindings::fermyon::spin::mysql as v1;
use wasmtime::component::Resource;

fn mysql_error(error: v2t::Error) -> v1::MysqlError {
    match error {
        v2t::Error::ConnectionFailed(m) => v1::MysqlError::ConnectionFailed(m),
        v2t::Error::BadParameter(m) => v1::MysqlError::BadParameter(m),
        v2t::Error::QueryFailed(m) => v1::MysqlError::QueryFailed(m),
        v2t::Error::ValueConversionFailed(m) => v1::MysqlError::ValueConversionFailed(m),
        v2t::Error::Other(m) => v1::MysqlError::OtherError(m),
    }
}

/// Opens a connection for one call, or the call's error.
async fn open(
    ctx: &mut CapabilitiesCtx<'_>,
    address: String,
) -> wasmtime::Result<Result<Resource<MysqlConnection>, v1::MysqlError>> {
    Ok(v2::HostConnection::open(ctx, address)
        .await?
        .map_err(mysql_error))
}

impl v1::Host for CapabilitiesCtx<'_> {
    async fn query(
        &mut self,
        address: String,
        statement: String,
        params: Vec<v2t::ParameterValue>,
    ) -> wasmtime::Result<Result<v2t::RowSet, v1::MysqlError>> {
        let connection = match open(self, address).await? {
            Ok(connection) => connection,
            Err(e) => return Ok(Err(e)),
        };
        let borrowed = Resource::new_borrow(connection.rep());
        let result = v2::HostConnection::query(self, borrowed, statement, params).await;
        v2::HostConnection::drop(self, connection).await?;
        Ok(result?.map_err(mysql_error))
    }

    async fn execute(
        &mut self,
        address: String,
        statement: String,
        params: Vec<v2t::ParameterValue>,
    ) -> wasmtime::Result<Result<(), v1::MysqlError>> {
        let connection = match open(self, address).await? {
            Ok(connection) => connection,
            Err(e) => return Ok(Err(e)),
        };
        let borrowed = Resource::new_borrow(connection.rep());
        let result = v2::HostConnection::execute(self, borrowed, statement, params).await;
        v2::HostConnection::drop(self, connection).await?;
        Ok(result?.map_err(mysql_error))
    }
}
