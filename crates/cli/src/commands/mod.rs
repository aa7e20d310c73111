//! One module per subcommand.

pub mod build;
pub mod completions;
pub mod doctor;
pub mod new;
pub(crate) mod process;
pub mod registry;
pub mod schema;
pub mod up;
pub mod watch;
