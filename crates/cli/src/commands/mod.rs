//! One module per subcommand.

pub mod registry;
pub mod up;
