//! One module per subcommand.

pub mod build;
pub mod completions;
pub mod doctor;
pub mod kube;
pub mod new;
pub mod node;
pub mod registry;
pub mod schema;
pub(crate) mod serve;
pub(crate) mod shared;
pub mod up;
pub mod watch;

/// A failure of the server itself rather than of the user's input (the async runtime or
/// the wasm engine could not start): `wisp` exits with [`crate::EXIT_RUNTIME_FAILURE`]
/// instead of the user-error code when one is in the error's chain.
#[derive(Debug)]
pub(crate) struct RuntimeFailure(anyhow::Error);

impl RuntimeFailure {
    /// Marks `error` as a runtime failure.
    pub(crate) fn wrap(error: anyhow::Error) -> anyhow::Error {
        anyhow::Error::new(RuntimeFailure(error))
    }
}

impl std::fmt::Display for RuntimeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for RuntimeFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
