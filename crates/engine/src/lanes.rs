//! Two lanes for running instances, so guests that spin cannot starve the rest.
//!
//! Every instance starts on the server's own runtime (the fast lane). One that has spent
//! more than [`SLOW_AFTER`] inside its polls (time executing wasm or host code, not time
//! waiting) is moved to a second runtime whose threads run at the lowest CPU priority
//! (nice 19). It keeps running there, at full speed when the machine is otherwise idle,
//! but the kernel gives the fast lane's threads the CPU first, so short requests keep
//! their latency while some guests loop until their deadline. The epoch ticker makes a
//! running guest yield every tick, which is what ends a poll and lets the move happen.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Time inside polls after which an instance moves to the slow lane.
pub const SLOW_AFTER: Duration = Duration::from_millis(5);

/// Nice value of the slow lane's threads: the lowest priority.
const SLOW_NICE: i32 = 19;

/// The slow lane's runtime, made on first use; `None` if it cannot be built (the
/// instance then stays where it is).
fn slow_lane() -> Option<&'static tokio::runtime::Handle> {
    static LANE: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    LANE.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("wisp-slow-lane")
            .on_thread_start(|| {
                // Per-thread nice value (Linux applies setpriority to one thread id).
                if let Err(err) =
                    rustix::process::setpriority_process(Some(rustix::thread::gettid()), SLOW_NICE)
                {
                    tracing::debug!("cannot lower the slow lane's priority: {err}");
                }
            })
            .enable_all()
            .build()
            .map_err(|err| {
                tracing::warn!("cannot start the slow lane for long-running instances: {err}")
            })
            .ok()
    })
    .as_ref()
    .map(tokio::runtime::Runtime::handle)
}

/// A future that moves itself to the slow lane once it has been busy for [`SLOW_AFTER`].
/// Dropping it cancels it wherever it runs.
pub(crate) struct Laned<F: Future> {
    lane: Lane<F>,
    busy: Duration,
}

enum Lane<F: Future> {
    Fast(Pin<Box<F>>),
    Slow(tokio::task::JoinHandle<F::Output>),
    Moving,
}

impl<F> Laned<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    pub(crate) fn new(future: F) -> Self {
        Self {
            lane: Lane::Fast(Box::pin(future)),
            busy: Duration::ZERO,
        }
    }
}

impl<F> Future for Laned<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        if let Lane::Fast(future) = &mut this.lane {
            let started = Instant::now();
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(output);
            }
            this.busy += started.elapsed();
            if this.busy < SLOW_AFTER {
                return Poll::Pending;
            }
            let Some(slow) = slow_lane() else {
                return Poll::Pending;
            };
            let Lane::Fast(future) = std::mem::replace(&mut this.lane, Lane::Moving) else {
                unreachable!("matched Fast above");
            };
            tracing::debug!("instance busy for {:?}; moved to the slow lane", this.busy);
            this.lane = Lane::Slow(slow.spawn(future));
        }
        match &mut this.lane {
            Lane::Slow(handle) => match Pin::new(handle).poll(cx) {
                Poll::Ready(Ok(output)) => Poll::Ready(output),
                Poll::Ready(Err(err)) if err.is_panic() => {
                    std::panic::resume_unwind(err.into_panic())
                }
                // Only this future aborts the task, and it is not polled after that.
                Poll::Ready(Err(err)) => panic!("slow-lane instance task ended early: {err}"),
                Poll::Pending => Poll::Pending,
            },
            Lane::Fast(_) | Lane::Moving => unreachable!("moved to the slow lane above"),
        }
    }
}

impl<F: Future> Drop for Laned<F> {
    fn drop(&mut self) {
        if let Lane::Slow(handle) = &self.lane {
            handle.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A busy future moves to the slow lane (so it runs on a `wisp-slow-lane` thread),
    /// finishes there, and a short one never leaves.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn busy_futures_move_and_short_ones_stay() {
        let busy = Laned::new(async {
            for _ in 0..10 {
                let start = Instant::now();
                while start.elapsed() < Duration::from_millis(2) {}
                tokio::task::yield_now().await;
            }
            std::thread::current().name().map(str::to_owned)
        });
        assert_eq!(busy.await.as_deref(), Some("wisp-slow-lane"));
        let short = Laned::new(async { std::thread::current().name().map(str::to_owned) });
        assert_ne!(short.await.as_deref(), Some("wisp-slow-lane"));
    }

    /// Dropping a moved future cancels it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn dropping_cancels_on_the_slow_lane() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let laned = Laned::new(async move {
            let _tx = tx;
            loop {
                let start = Instant::now();
                while start.elapsed() < Duration::from_millis(1) {}
                tokio::task::yield_now().await;
            }
        });
        let _ = tokio::time::timeout(Duration::from_millis(50), laned).await;
        // The sender is dropped once the cancelled task is gone.
        assert!(
            tokio::time::timeout(Duration::from_secs(2), rx)
                .await
                .is_ok()
        );
    }
}
