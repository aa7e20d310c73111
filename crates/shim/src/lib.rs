//! `containerd-shim-wisp-v1`: runs Spin apps in containerd, and so in Kubernetes pods, on
//! the same runtime as `wisp up` (runwasi's `containerd-shim-wasm` drives the container's
//! lifecycle; [`sandbox::WispSandbox`] serves its app). See `docs/kubernetes.md`.

pub mod sandbox;
pub mod settings;
pub mod source;
mod zygotes;

pub use sandbox::{WispSandbox, WispShim};
