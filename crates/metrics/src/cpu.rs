//! CPU time of an instance: the calling thread's CPU clock read around each poll of the
//! instance's future. Wasm runs on the instance's fiber inside those polls, as do the host
//! calls it makes, so their sum is the CPU the instance cost, whichever thread (fast or
//! slow lane) polled it. Work the instance hands to other threads (the blocking pool,
//! connection tasks of outbound clients) is not in it.

use crate::thread_clock::thread_cpu_nanos;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// CPU time used so far by one instance; clones share it.
#[derive(Debug, Clone, Default)]
pub struct CpuMeter(Arc<AtomicU64>);

impl CpuMeter {
    /// A meter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The CPU time recorded so far.
    pub fn used(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }

    fn add(&self, nanos: u64) {
        self.0.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// `F`, adding the CPU time of each of its polls to a [`CpuMeter`] (none: polls `F` as is).
pub struct CpuMetered<F> {
    inner: Pin<Box<F>>,
    meter: Option<CpuMeter>,
}

impl<F> CpuMetered<F> {
    /// Meters `inner` into `meter`, if there is one.
    pub fn new(inner: F, meter: Option<CpuMeter>) -> Self {
        Self {
            inner: Box::pin(inner),
            meter,
        }
    }
}

impl<F: Future> Future for CpuMetered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let Some(meter) = self.meter.clone() else {
            return self.inner.as_mut().poll(cx);
        };
        let before = thread_cpu_nanos();
        let polled = self.inner.as_mut().poll(cx);
        meter.add(thread_cpu_nanos().saturating_sub(before));
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Busy polls are counted, time spent waiting between polls is not.
    #[tokio::test]
    async fn counts_busy_polls_not_waiting() {
        let meter = CpuMeter::new();
        CpuMetered::new(
            async {
                for _ in 0..3 {
                    let start = Instant::now();
                    while start.elapsed() < Duration::from_millis(10) {
                        std::hint::spin_loop();
                    }
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            },
            Some(meter.clone()),
        )
        .await;
        let used = meter.used();
        // 30 ms of spinning; 90 ms of sleeping must not count. A loaded machine can take
        // the CPU away mid-spin, so only the upper bound is tight.
        assert!(used >= Duration::from_millis(5), "{used:?}");
        assert!(used < Duration::from_millis(80), "{used:?}");
    }
}
