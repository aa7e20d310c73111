//! Spin 1.x's `fermyon:spin/postgres` (unversioned): an address per call, each call on a
//! `@2.0.0` connection of its own (see [`crate::rdbms::address_per_call`]).

use super::PgConnection;
use crate::bindings::fermyon::spin::postgres as v2;
use crate::spin1_bindings::fermyon::spin::postgres as v1;

crate::rdbms::address_per_call!(v1, v2, PgError, PgConnection, u64);
