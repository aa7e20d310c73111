//! `spin:postgres/postgres@4.2.0` (also serving `@4.0`/`@4.1` imports): the conversions
//! of its types (every value the codec knows, server errors field by field), its
//! blocking-style and WASI 0.3 (`*-async`, rows as a stream) connection functions, and
//! its `connection-builder`.

use super::codec::{Bound, PgType, PgValue};
use super::{
    Failure, PgConnection, QueryFailure, RowSet, connect, execute, query_stream, sync_connection,
};
use crate::bindings::spin::postgres4_2_0::postgres as v4;
use crate::rdbms;
use crate::{Capabilities, CapabilitiesCtx};
use tokio_postgres::error::{DbError, ErrorPosition};
use wasmtime::component::{Accessor, FutureReader, Resource, StreamReader};

/// `connection-builder`: an address waiting for `build`.
pub struct PostgresBuilder {
    address: String,
    /// What `set-ca-root` was last given (PEM), trusted beside the webpki roots.
    ca_root: Option<String>,
}

impl From<Failure> for v4::Error {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Connection(m) => v4::Error::ConnectionFailed(m.to_string()),
            Failure::BadParameter(m) => v4::Error::BadParameter(m.to_string()),
            Failure::Query(QueryFailure::Text(m)) => {
                v4::Error::QueryFailed(v4::QueryError::Text(m.to_string()))
            }
            Failure::Query(QueryFailure::Db(db)) => {
                v4::Error::QueryFailed(v4::QueryError::DbError(db_error(&db)))
            }
            Failure::Conversion(m) => v4::Error::ValueConversionFailed(m.to_string()),
        }
    }
}

/// A server error with all its fields; the ones without a field of their own go to
/// `extras`.
fn db_error(db: &DbError) -> v4::DbError {
    let mut extras = Vec::new();
    let mut extra = |name: &str, value: Option<&str>| {
        if let Some(value) = value {
            extras.push((name.to_owned(), value.to_owned()));
        }
    };
    extra("hint", db.hint());
    extra("where", db.where_());
    extra("schema", db.schema());
    extra("table", db.table());
    extra("column", db.column());
    extra("datatype", db.datatype());
    extra("constraint", db.constraint());
    extra("routine", db.routine());
    if let Some(ErrorPosition::Original(position)) = db.position() {
        extras.push(("position".to_owned(), position.to_string()));
    }
    v4::DbError {
        as_text: db.to_string(),
        severity: db.severity().to_owned(),
        code: db.code().code().to_owned(),
        message: db.message().to_owned(),
        detail: db.detail().map(str::to_owned),
        extras,
    }
}

mod convert {
    use super::*;

    fn kind(inclusive: bool) -> v4::RangeBoundKind {
        if inclusive {
            v4::RangeBoundKind::Inclusive
        } else {
            v4::RangeBoundKind::Exclusive
        }
    }

    fn inclusive(kind: v4::RangeBoundKind) -> bool {
        matches!(kind, v4::RangeBoundKind::Inclusive)
    }

    fn bound_from<T>(bound: Option<(T, v4::RangeBoundKind)>) -> Bound<T> {
        bound.map(|(value, k)| (value, inclusive(k)))
    }

    fn bound_to<T>(bound: Bound<T>) -> Option<(T, v4::RangeBoundKind)> {
        bound.map(|(value, i)| (value, kind(i)))
    }

    pub(super) fn param(value: v4::ParameterValue) -> PgValue {
        use v4::ParameterValue as P;
        match value {
            P::Boolean(b) => PgValue::Bool(b),
            P::Int8(i) => PgValue::Int8(i),
            P::Int16(i) => PgValue::Int16(i),
            P::Int32(i) => PgValue::Int32(i),
            P::Int64(i) => PgValue::Int64(i),
            P::Floating32(f) => PgValue::Float32(f),
            P::Floating64(f) => PgValue::Float64(f),
            P::Str(s) => PgValue::Str(s),
            P::Binary(b) => PgValue::Binary(b),
            P::Date(d) => PgValue::Date(d),
            P::Time(t) => PgValue::Time(t),
            P::Datetime(dt) => PgValue::Datetime(dt),
            P::Timestamp(s) => PgValue::Timestamp(s),
            P::Uuid(s) => PgValue::Uuid(s),
            P::Jsonb(j) => PgValue::Jsonb(j),
            P::Decimal(s) => PgValue::Decimal(s),
            P::RangeInt32((l, u)) => PgValue::RangeInt32((bound_from(l), bound_from(u))),
            P::RangeInt64((l, u)) => PgValue::RangeInt64((bound_from(l), bound_from(u))),
            P::RangeDecimal((l, u)) => PgValue::RangeDecimal((bound_from(l), bound_from(u))),
            P::ArrayInt32(a) => PgValue::ArrayInt32(a),
            P::ArrayInt64(a) => PgValue::ArrayInt64(a),
            P::ArrayDecimal(a) => PgValue::ArrayDecimal(a),
            P::ArrayStr(a) => PgValue::ArrayStr(a),
            P::Interval(i) => PgValue::Interval {
                micros: i.micros,
                days: i.days,
                months: i.months,
            },
            P::DbNull => PgValue::Null,
        }
    }

    fn data_type(ty: PgType) -> v4::DbDataType {
        use v4::DbDataType as D;
        match ty {
            PgType::Boolean => D::Boolean,
            PgType::Int8 => D::Int8,
            PgType::Int16 => D::Int16,
            PgType::Int32 => D::Int32,
            PgType::Int64 => D::Int64,
            PgType::Floating32 => D::Floating32,
            PgType::Floating64 => D::Floating64,
            PgType::Str => D::Str,
            PgType::Binary => D::Binary,
            PgType::Date => D::Date,
            PgType::Time => D::Time,
            PgType::Datetime => D::Datetime,
            PgType::Timestamp => D::Timestamp,
            PgType::Uuid => D::Uuid,
            PgType::Jsonb => D::Jsonb,
            PgType::Decimal => D::Decimal,
            PgType::RangeInt32 => D::RangeInt32,
            PgType::RangeInt64 => D::RangeInt64,
            PgType::RangeDecimal => D::RangeDecimal,
            PgType::ArrayInt32 => D::ArrayInt32,
            PgType::ArrayInt64 => D::ArrayInt64,
            PgType::ArrayDecimal => D::ArrayDecimal,
            PgType::ArrayStr => D::ArrayStr,
            PgType::Interval => D::Interval,
            PgType::Other(name) => D::Other(name),
        }
    }

    fn value(value: PgValue) -> v4::DbValue {
        use v4::DbValue as D;
        match value {
            PgValue::Null => D::DbNull,
            PgValue::Bool(b) => D::Boolean(b),
            PgValue::Int8(i) => D::Int8(i),
            PgValue::Int16(i) => D::Int16(i),
            PgValue::Int32(i) => D::Int32(i),
            PgValue::Int64(i) => D::Int64(i),
            PgValue::Float32(f) => D::Floating32(f),
            PgValue::Float64(f) => D::Floating64(f),
            PgValue::Str(s) => D::Str(s),
            PgValue::Binary(b) => D::Binary(b),
            PgValue::Date(d) => D::Date(d),
            PgValue::Time(t) => D::Time(t),
            PgValue::Datetime(dt) => D::Datetime(dt),
            PgValue::Timestamp(s) => D::Timestamp(s),
            PgValue::Uuid(s) => D::Uuid(s),
            PgValue::Jsonb(j) => D::Jsonb(j),
            PgValue::Decimal(s) => D::Decimal(s),
            PgValue::RangeInt32((l, u)) => D::RangeInt32((bound_to(l), bound_to(u))),
            PgValue::RangeInt64((l, u)) => D::RangeInt64((bound_to(l), bound_to(u))),
            PgValue::RangeDecimal((l, u)) => D::RangeDecimal((bound_to(l), bound_to(u))),
            PgValue::ArrayInt32(a) => D::ArrayInt32(a),
            PgValue::ArrayInt64(a) => D::ArrayInt64(a),
            PgValue::ArrayDecimal(a) => D::ArrayDecimal(a),
            PgValue::ArrayStr(a) => D::ArrayStr(a),
            PgValue::Interval {
                micros,
                days,
                months,
            } => D::Interval(v4::Interval {
                micros,
                days,
                months,
            }),
            PgValue::Unsupported(raw) => D::Unsupported(raw),
            PgValue::UInt(_) => D::Unsupported(Vec::new()),
        }
    }

    pub(super) fn columns(columns: Vec<(String, PgType)>) -> Vec<v4::Column> {
        columns
            .into_iter()
            .map(|(name, ty)| v4::Column {
                name,
                data_type: data_type(ty),
            })
            .collect()
    }

    pub(super) fn row(row: Vec<PgValue>) -> v4::Row {
        row.into_iter().map(value).collect()
    }

    pub(super) fn row_set((columns, rows): RowSet) -> v4::RowSet {
        v4::RowSet {
            columns: self::columns(columns),
            rows: rows.into_iter().map(row).collect(),
        }
    }
}

impl v4::Host for CapabilitiesCtx<'_> {}

sync_connection!(v4::HostConnection, v4, convert);

impl<T> v4::HostConnectionWithStore<T> for Capabilities {
    async fn open_async(
        accessor: &Accessor<T, Self>,
        address: String,
    ) -> wasmtime::Result<Result<Resource<PgConnection>, v4::Error>> {
        let opened = rdbms::open_session(accessor, |caps| connect(caps, &address, None)).await?;
        Ok(opened.map_err(v4::Error::from))
    }

    async fn query_async(
        accessor: &Accessor<T, Self>,
        connection: Resource<PgConnection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> wasmtime::Result<
        Result<
            (
                Vec<v4::Column>,
                StreamReader<v4::Row>,
                FutureReader<Result<(), v4::Error>>,
            ),
            v4::Error,
        >,
    > {
        let session = rdbms::session(accessor, &connection)?;
        let params: Vec<PgValue> = params.into_iter().map(convert::param).collect();
        let (columns, rows, done) =
            match query_stream(session, statement, params, convert::row).await {
                Ok(started) => started,
                Err(e) => return Ok(Err(e.into())),
            };
        let (rows, done) =
            rdbms::rows_and_outcome(accessor, rows, done, v4::Error::from, v4::Error::Other)?;
        Ok(Ok((convert::columns(columns), rows, done)))
    }

    async fn execute_async(
        accessor: &Accessor<T, Self>,
        connection: Resource<PgConnection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, v4::Error>> {
        let session = rdbms::session(accessor, &connection)?;
        let params: Vec<PgValue> = params.into_iter().map(convert::param).collect();
        Ok(execute(&session, &statement, &params)
            .await
            .map_err(v4::Error::from))
    }
}

impl v4::HostConnectionBuilder for CapabilitiesCtx<'_> {
    async fn new(&mut self, address: String) -> wasmtime::Result<Resource<PostgresBuilder>> {
        // The constructor cannot return an error; past the handle bound the instance
        // traps, as it would for any other unbounded resource growth.
        if !self.state.reserve_handle() {
            wasmtime::bail!("{}", rdbms::too_many_handles());
        }
        Ok(self.table.push(PostgresBuilder {
            address,
            ca_root: None,
        })?)
    }

    async fn set_ca_root(
        &mut self,
        builder: Resource<PostgresBuilder>,
        certificate: String,
    ) -> wasmtime::Result<Result<(), v4::Error>> {
        // Checked now, as Spin does, so a bad certificate is reported where it was given.
        if let Err(e) = super::ca_root_tls(&certificate) {
            return Ok(Err(v4::Error::Other(e)));
        }
        self.table.get_mut(&builder)?.ca_root = Some(certificate);
        Ok(Ok(()))
    }

    async fn build(
        &mut self,
        builder: Resource<PostgresBuilder>,
    ) -> wasmtime::Result<Result<Resource<PgConnection>, v4::Error>> {
        let PostgresBuilder { address, ca_root } = self.table.get(&builder)?;
        let (address, ca_root) = (address.clone(), ca_root.clone());
        let opened = self
            .open_session(|caps| connect(caps, &address, ca_root.as_deref()))
            .await?;
        Ok(opened.map_err(v4::Error::from))
    }

    async fn drop(&mut self, builder: Resource<PostgresBuilder>) -> wasmtime::Result<()> {
        self.table.delete(builder)?;
        self.state.release_handle();
        Ok(())
    }
}

impl<T> v4::HostConnectionBuilderWithStore<T> for Capabilities {
    async fn build_async(
        accessor: &Accessor<T, Self>,
        builder: Resource<PostgresBuilder>,
    ) -> wasmtime::Result<Result<Resource<PgConnection>, v4::Error>> {
        let (address, ca_root) =
            accessor.with(|mut access| -> wasmtime::Result<(String, Option<String>)> {
                let builder = access.get().table.get(&builder)?;
                Ok((builder.address.clone(), builder.ca_root.clone()))
            })?;
        let opened =
            rdbms::open_session(accessor, |caps| connect(caps, &address, ca_root.as_deref()))
                .await?;
        Ok(opened.map_err(v4::Error::from))
    }
}
