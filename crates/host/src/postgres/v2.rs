//! `fermyon:spin/postgres@2.0.0` (with `fermyon:spin/rdbms-types`): the value and column
//! conversions of its types, and its host trait. Its `error` converts from a failure in
//! `rdbms`, shared with `fermyon:spin/mysql@2.0.0`.

use super::codec::{PgType, PgValue};
use super::{PgConnection, RowSet, sync_connection};
use crate::CapabilitiesCtx;
use crate::bindings::fermyon::spin::{postgres as v2, rdbms_types as v2t};
use wasmtime::component::Resource;

mod convert {
    use super::*;

    pub(super) fn param(value: v2t::ParameterValue) -> PgValue {
        use v2t::ParameterValue as P;
        match value {
            P::Boolean(b) => PgValue::Bool(b),
            P::Int8(i) => PgValue::Int8(i),
            P::Int16(i) => PgValue::Int16(i),
            P::Int32(i) => PgValue::Int32(i),
            P::Int64(i) => PgValue::Int64(i),
            P::Uint8(u) => PgValue::UInt(u64::from(u)),
            P::Uint16(u) => PgValue::UInt(u64::from(u)),
            P::Uint32(u) => PgValue::UInt(u64::from(u)),
            P::Uint64(u) => PgValue::UInt(u),
            P::Floating32(f) => PgValue::Float32(f),
            P::Floating64(f) => PgValue::Float64(f),
            P::Str(s) => PgValue::Str(s),
            P::Binary(b) => PgValue::Binary(b),
            P::DbNull => PgValue::Null,
        }
    }

    fn data_type(ty: PgType) -> v2t::DbDataType {
        use v2t::DbDataType as D;
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
            _ => D::Other,
        }
    }

    fn value(value: PgValue) -> v2t::DbValue {
        use v2t::DbValue as D;
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
            _ => D::Unsupported,
        }
    }

    pub(super) fn row_set((columns, rows): RowSet) -> v2t::RowSet {
        v2t::RowSet {
            columns: columns
                .into_iter()
                .map(|(name, ty)| v2t::Column {
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

impl v2::Host for CapabilitiesCtx<'_> {}

sync_connection!(v2::HostConnection, v2t, convert);
