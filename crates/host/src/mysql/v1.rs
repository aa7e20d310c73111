//! Spin 1.x's `fermyon:spin/mysql` (unversioned): an address per call, each call on a
//! `@2.0.0` connection of its own (see [`crate::rdbms::address_per_call`]).

use super::MysqlConnection;
use crate::bindings::fermyon::spin::mysql as v2;
use crate::spin1_bindings::fermyon::spin::mysql as v1;

crate::rdbms::address_per_call!(v1, v2, MysqlError, MysqlConnection, ());
