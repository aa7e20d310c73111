//! Per-instance host state: the sandboxed WASI context, `wasi:http` state, the memory
//! limiter and the deadline.

use crate::budget::{Charge, INSTANCE_OVERHEAD, LearnedPeak};
use crate::outbound::{ComponentOutbound, OutboundBudget, OutboundHooks};
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};
use wisp_host::{CapabilitiesCtx, CapabilitiesView, InstanceState};

/// Why the host stopped a guest; carried inside the wasmtime error so the trigger can
/// answer with the right status and log the limit that was hit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestFault {
    /// The request ran past its wall-clock deadline.
    #[error("exceeded its {0:?} deadline")]
    Deadline(std::time::Duration),
    /// A memory grow was refused because it would pass the cap.
    #[error("exceeded its memory limit of {0} bytes")]
    MemoryLimit(u64),
    /// A memory grow was refused because the process-wide budget (bytes) was in use by
    /// other instances: the server is overloaded, not the guest at fault.
    #[error(
        "could not grow its memory: the process memory budget of {} MiB is in use by other instances (raise --memory-budget-mb, or lower --max-instances)",
        .0 >> 20
    )]
    MemoryBudget(u64),
    /// An in-process request (`http://self`, `*.spin.internal`) found every instance slot
    /// it may use busy (it does not wait: its caller holds a slot): the server is at
    /// capacity, not the guest at fault.
    #[error(
        "found no free instance slot for an in-process request (all {0} are busy); raise the cap or make fewer nested calls"
    )]
    NoInstanceSlot(String),
}

/// The `T` of every `Store<T>`: everything one instance may touch.
pub struct Host {
    table: ResourceTable,
    capabilities: InstanceState,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: OutboundHooks,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) deadline: Instant,
    /// Deadlines need the epoch to advance while this instance lives.
    _ticking: crate::Ticking,
}

impl Host {
    #[expect(
        clippy::too_many_arguments,
        reason = "one per part of an instance's state, each built by the caller"
    )]
    pub(crate) fn new(
        component: Arc<str>,
        capabilities: InstanceState,
        outbound: Arc<ComponentOutbound>,
        budget: OutboundBudget,
        wasi: WasiCtx,
        memory: MemoryLimiter,
        deadline: Instant,
        ticking: crate::Ticking,
    ) -> Self {
        let outbound = OutboundHooks {
            component,
            metrics: capabilities.metrics().clone(),
            trace: capabilities.trace().cloned(),
            policy: outbound,
            budget,
            deadline,
        };
        Self {
            table: ResourceTable::new(),
            capabilities,
            wasi,
            http: WasiHttpCtx::new(),
            outbound,
            limiter: memory,
            deadline,
            _ticking: ticking,
        }
    }

    /// The fault the host recorded while running this instance, if any. Deadline faults
    /// travel in the error itself; a refused memory grow shows up here because the guest
    /// usually traps on its own after the allocation fails.
    pub(crate) fn recorded_fault(&self) -> Option<GuestFault> {
        let limiter = &self.limiter;
        if limiter.budget_hit {
            return Some(GuestFault::MemoryBudget(limiter.budget_total));
        }
        limiter
            .hit
            .then_some(GuestFault::MemoryLimit(limiter.limit))
    }
}

impl Host {
    /// The outbound HTTP policy and client, for interfaces other than `wasi:http` that
    /// send through it (Spin 1.x's `fermyon:spin/http`).
    pub(crate) fn outbound_hooks(&mut self) -> &mut OutboundHooks {
        &mut self.outbound
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl CapabilitiesView for Host {
    fn capabilities(&mut self) -> CapabilitiesCtx<'_> {
        CapabilitiesCtx {
            state: &mut self.capabilities,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

/// Caps linear memory per instance, charges it to the process-wide budget, and
/// remembers which of the two refused a growth.
pub(crate) struct MemoryLimiter {
    limit: u64,
    hit: bool,
    /// Budget held by this instance (reserved on admission, grown with its memory).
    charge: Charge,
    budget_total: u64,
    budget_hit: bool,
    /// Linear memory granted so far, over all of the instance's memories.
    granted: u64,
    /// The most linear memory the instance asked for (capped at `limit`).
    peak: u64,
    /// Where the peak is reported when the instance ends.
    learned: Arc<LearnedPeak>,
    /// The instance's deadline: growth never waits past it.
    deadline: Instant,
}

/// Longest a memory growth waits for budget before it fails.
const GROWTH_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl MemoryLimiter {
    pub(crate) fn new(
        limit: u64,
        charge: Charge,
        budget_total: u64,
        learned: Arc<LearnedPeak>,
        deadline: Instant,
    ) -> Self {
        Self {
            limit,
            hit: false,
            charge,
            budget_total,
            budget_hit: false,
            granted: 0,
            peak: 0,
            learned,
            deadline,
        }
    }
}

impl MemoryLimiter {
    /// The most linear memory the instance asked for so far (capped at its limit).
    pub(crate) fn peak(&self) -> u64 {
        self.peak
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.learned.observe(self.peak);
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime::ResourceLimiterAsync for MemoryLimiter {
    async fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let wanted = self
            .granted
            .saturating_add((desired as u64).saturating_sub(current as u64));
        self.peak = self.peak.max(wanted.min(self.limit));
        // The cap covers all of an instance's memories together (a component composed
        // with its dependencies has one per part).
        if wanted > self.limit {
            self.hit = true;
            return Ok(false);
        }
        let needed = wanted.saturating_add(INSTANCE_OVERHEAD);
        if needed > self.charge.bytes() {
            // Wait a little for other instances to give budget back, never past the
            // deadline: if everyone is waiting for everyone, the wait ends and the
            // growth fails instead of the instances deadlocking.
            let wait = GROWTH_WAIT.min(self.deadline.saturating_duration_since(Instant::now()));
            let more = needed - self.charge.bytes();
            if !self.charge.grow_within(more, wait).await {
                self.budget_hit = true;
                // Its real need is unknown but at least this much, and guessing low is what
                // let too many in: the next instances reserve the whole cap, until
                // instances that finish report less.
                self.peak = self.limit;
                return Ok(false);
            }
        }
        self.granted = wanted;
        Ok(true)
    }

    async fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million entries is far beyond real programs.
        Ok(desired <= 1_000_000)
    }
}

/// Which of the process's streams a guest stream goes to.
#[derive(Clone, Copy)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// Guest stdout/stderr: whole lines, each prefixed with `[component-id] `, written to the
/// process's stdout/stderr. Cheap to create per instance; the line buffer only exists once
/// the guest opens the stream.
#[derive(Clone)]
pub(crate) struct LogStream {
    prefix: Arc<str>,
    stream: Stream,
    /// `false` keeps what the guest writes off the process's stream (`--quiet`, a
    /// component not `--follow`ed).
    shown: bool,
    /// The component's log file for this stream (`--log-dir`): every line, unprefixed.
    file: Option<LogFile>,
}

/// A component's log file, shared by its instances; lines are appended whole.
pub(crate) type LogFile = Arc<std::sync::Mutex<std::fs::File>>;

impl LogStream {
    pub(crate) fn new(
        prefix: Arc<str>,
        stream: Stream,
        shown: bool,
        file: Option<LogFile>,
    ) -> Self {
        Self {
            prefix,
            stream,
            shown,
            file,
        }
    }

    fn writer(&self) -> LineWriter {
        LineWriter {
            prefix: self.prefix.clone(),
            stream: self.stream,
            shown: self.shown,
            file: self.file.clone(),
            pending: Vec::new(),
        }
    }
}

/// One open guest stream. Partial lines are buffered so concurrent instances never
/// interleave mid-line; the rest is flushed when the stream is dropped.
struct LineWriter {
    prefix: Arc<str>,
    stream: Stream,
    shown: bool,
    file: Option<LogFile>,
    pending: Vec<u8>,
}

/// Lines longer than this are flushed in pieces rather than buffered without bound.
const MAX_LINE: usize = 16 * 1024;

impl LineWriter {
    fn write(&mut self, bytes: &[u8]) {
        if !self.shown && self.file.is_none() {
            return;
        }
        self.pending.extend_from_slice(bytes);
        let complete = match self.pending.iter().rposition(|b| *b == b'\n') {
            Some(i) => i + 1,
            None if self.pending.len() >= MAX_LINE => self.pending.len(),
            None => return,
        };
        let lines: Vec<u8> = self.pending.drain(..complete).collect();
        self.emit(&lines);
    }

    fn emit(&self, lines: &[u8]) {
        if let Some(file) = &self.file {
            let mut file = file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // A full disk must not fail the request either.
            let _ = file.write_all(lines);
            if !lines.ends_with(b"\n") {
                let _ = file.write_all(b"\n");
            }
        }
        if !self.shown {
            return;
        }
        let out = for_terminal(&self.prefix, lines);
        // Logging must never fail a request; a closed stdout just drops guest output.
        let _ = match self.stream {
            Stream::Stdout => std::io::stdout().lock().write_all(&out),
            Stream::Stderr => std::io::stderr().lock().write_all(&out),
        };
    }
}

/// Guest `lines` as the process's stream shows them: each prefixed with `[component] `,
/// with what could rewrite the operator's terminal (escape sequences, carriage returns,
/// bidirectional overrides) escaped by [`crate::printable`], as the guest chose the bytes.
/// The `--log-dir` files keep them as written.
fn for_terminal(prefix: &str, lines: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.len() + 16);
    for line in lines.split_inclusive(|b| *b == b'\n') {
        // A CRLF ending is a line end, not a carriage return to show.
        let text = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"))
            .unwrap_or(line);
        out.extend_from_slice(b"[");
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(b"] ");
        out.extend_from_slice(crate::printable(&String::from_utf8_lossy(text)).as_bytes());
        out.push(b'\n');
    }
    out
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.emit(&rest);
        }
    }
}

impl wasmtime_wasi::cli::IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.writer())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }
}

impl wasmtime_wasi::p2::OutputStream for LineWriter {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        LineWriter::write(self, &bytes);
        Ok(())
    }
    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        LineWriter::write(&mut self, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::for_terminal;

    #[test]
    fn guest_lines_are_prefixed_and_cannot_rewrite_the_terminal() {
        assert_eq!(
            for_terminal("web", b"plain\tline\nsecond"),
            b"[web] plain\tline\n[web] second\n"
        );
        assert_eq!(
            for_terminal("web", b"from windows\r\nnext\r\n"),
            b"[web] from windows\n[web] next\n"
        );
        // An escape sequence, a carriage return that would overwrite the line, a
        // right-to-left override, and bytes that are not UTF-8.
        assert_eq!(
            String::from_utf8(for_terminal(
                "web",
                b"\x1b[2J\x1b]0;title\x07ok\rfake\xe2\x80\xae!\xff\n"
            ))
            .unwrap(),
            "[web] \\u{1b}[2J\\u{1b}]0;title\\u{7}ok\\u{d}fake\\u{202e}!\u{fffd}\n"
        );
    }
}
