//! Process-level set-up shared by the serving commands.

/// Raises the soft open-file limit to the hard limit (a server needs a descriptor per
/// connection; the soft limit is often 1024) and returns the limit now in force.
pub(crate) fn descriptor_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let (Some(current), maximum) = (limit.current, limit.maximum) else {
        // Unlimited: the connection cap's own default applies.
        return u64::MAX;
    };
    let Some(maximum) = maximum else {
        return current;
    };
    if current < maximum {
        let raised = rustix::process::Rlimit {
            current: Some(maximum),
            maximum: Some(maximum),
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return maximum,
            Err(err) => tracing::debug!("cannot raise the open-file limit to {maximum}: {err}"),
        }
    }
    current
}
