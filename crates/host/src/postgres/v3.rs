//! `spin:postgres/postgres@3.0.0`: the value and column conversions of its types (2.0's
//! plus dates and times), and its host trait. Its `error` converts from a failure in
//! `rdbms`, as 2.0's does.

use super::codec::{PgType, PgValue};
use super::{PgConnection, RowSet, sync_connection};
use crate::CapabilitiesCtx;
use crate::bindings::spin::postgres3_0_0::postgres as v3;
use wasmtime::component::Resource;

mod convert {
    use super::*;

    pub(super) fn param(value: v3::ParameterValue) -> PgValue {
        use v3::ParameterValue as P;
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
            P::DbNull => PgValue::Null,
        }
    }

    fn data_type(ty: PgType) -> v3::DbDataType {
        use v3::DbDataType as D;
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
            _ => D::Other,
        }
    }

    fn value(value: PgValue) -> v3::DbValue {
        use v3::DbValue as D;
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
            _ => D::Unsupported,
        }
    }

    pub(super) fn row_set((columns, rows): RowSet) -> v3::RowSet {
        v3::RowSet {
            columns: columns
                .into_iter()
                .map(|(name, ty)| v3::Column {
                    name,
                    data_type: data_type(ty),
                })
                .collect(),
            rows: rows
                .into_iter()
                .map(|row| row.into_iter().map(value).collect())
                .collect(),
        }
    }
}

impl v3::Host for CapabilitiesCtx<'_> {}

sync_connection!(v3::HostConnection, v3, convert);
