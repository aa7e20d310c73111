//! Running a loaded component: memory budget, instance slot, store, deadline and fault
//! classification, for requests and for trigger events.

use crate::budget::{Charge, INSTANCE_OVERHEAD};
use crate::host::{LogStream, MemoryLimiter, Stream};
use crate::lanes::{Laned, spawn_for_request};
use crate::outbound::OutboundBudget;
use crate::{GuestFault, Host};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::{AsContextMut, Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::handler::{Prepared, Proxy};
use wisp_host::InstanceState;
use wisp_metrics::{ComponentMetrics, CpuMeter, CpuMetered};
use wisp_telemetry::SpanParent;

use super::{GuestError, LoadedComponent};

/// Extra time, past the guest deadline, that the host waits for the epoch interrupt to land
/// before giving up on a guest task that is stuck outside wasm (e.g. awaiting host I/O).
const DEADLINE_SLACK: Duration = Duration::from_millis(250);

/// `call`, cut off at `deadline` plus [`DEADLINE_SLACK`]. The epoch interrupt stops a
/// guest running wasm; this bound also stops one waiting in a host call (a database row
/// it never reads, a silent socket).
async fn within_hard_stop<T>(
    deadline: Instant,
    timeout: Duration,
    call: impl std::future::Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    let hard_stop = tokio::time::Instant::from_std(deadline + DEADLINE_SLACK);
    match tokio::time::timeout_at(hard_stop, call).await {
        Ok(result) => result,
        Err(_) => Err(wasmtime::Error::new(GuestFault::Deadline(timeout))),
    }
}

impl LoadedComponent {
    /// Reserves this instance's share of the memory budget: what the component's
    /// instances used lately. `wait = false` (nested in-process calls, whose callers hold
    /// budget) fails at once instead of waiting.
    async fn reserve_memory(&self, wait: bool) -> Result<Charge, GuestError> {
        let budget = &self.engine.budget;
        // Until an instance of this component has ended, its need is unknown: reserve the
        // cap, so a cold burst cannot take the budget in small pieces and then wait on
        // itself to grow (each instance holding what the others need).
        let need = match self.learned_memory.get() {
            0 => self.limits.memory_limit,
            learned => learned,
        };
        let wanted = INSTANCE_OVERHEAD + need;
        let charge = match wait {
            true => budget.reserve(wanted).await,
            false => budget.try_reserve(wanted),
        };
        charge.ok_or_else(|| GuestError {
            fault: Some(GuestFault::MemoryBudget(budget.total())),
            message: format!(
                "component `{}`: no memory budget free for another instance",
                self.id
            ),
        })
    }

    fn new_store(
        &self,
        engine: &wasmtime::Engine,
        deadline: Instant,
        budget: OutboundBudget,
        charge: Charge,
        trace: Option<SpanParent>,
        command: Option<CommandIo>,
    ) -> Result<Store<Host>, GuestError> {
        let mut wasi = WasiCtxBuilder::new();
        match command {
            // A command's stdout is its output, not a log; its own variables win over the
            // component's of the same name (each name is set once).
            Some(io) => {
                for (name, value) in &self.env {
                    if io.env.iter().all(|(other, _)| other != name) {
                        wasi.env(name, value);
                    }
                }
                wasi.envs(&io.env)
                    .args(&io.args)
                    .stdin(MemoryInputPipe::new(io.stdin))
                    .stdout(io.stdout);
            }
            None => {
                wasi.envs(&self.env).stdout(LogStream::new(
                    self.id.clone(),
                    Stream::Stdout,
                    self.shows_output,
                    self.log_files.as_ref().map(|(out, _)| out.clone()),
                ));
            }
        }
        wasi.stderr(LogStream::new(
            self.id.clone(),
            Stream::Stderr,
            self.shows_output,
            self.log_files.as_ref().map(|(_, err)| err.clone()),
        ));
        match self.capabilities.sockets() {
            Some(sockets) => {
                wasi.allow_ip_name_lookup(true)
                    .allow_tcp(sockets.tcp())
                    .allow_udp(sockets.udp())
                    .socket_addr_check(crate::sockets::addr_check(
                        self.capabilities.clone(),
                        trace.clone(),
                    ));
            }
            // No socket grants (the default): everything off. The builder's default
            // address check already refuses every address, so none is installed.
            None => {
                wasi.allow_ip_name_lookup(false)
                    .allow_tcp(false)
                    .allow_udp(false);
            }
        }
        if let Some(dir) = &self.files_dir {
            wasi.preopened_dir(dir, "/", FsPerms::ReadOnly)
                .map_err(|e| GuestError {
                    fault: None,
                    message: format!("cannot mount files from {}: {e:#}", dir.display()),
                })?;
        }
        let host = Host::new(
            self.id.clone(),
            InstanceState::new(self.capabilities.clone())
                .with_deadline(deadline)
                .with_trace(trace),
            self.outbound.clone(),
            budget,
            wasi.build(),
            MemoryLimiter::new(
                self.limits.memory_limit,
                charge,
                self.engine.budget.total(),
                self.learned_memory.clone(),
                deadline,
            ),
            deadline,
            self.engine.ticking(),
        );
        let mut store = Store::new(engine, host);
        store.limiter_async(|host| &mut host.limiter);
        let timeout = self.limits.timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |ctx| {
            if Instant::now() >= ctx.data().deadline {
                Err(wasmtime::Error::new(GuestFault::Deadline(timeout)))
            } else {
                // Yield each tick so a busy guest shares its worker thread with others.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok(store)
    }

    /// Handles one request in a fresh instance. The response is returned as soon as the
    /// guest produces its head; the body streams while the guest keeps running, and the
    /// instance is dropped when the guest finishes (or hits its deadline).
    pub async fn handle(
        self: &Arc<Self>,
        request: http::Request<WasiBody>,
    ) -> Result<http::Response<WasiBody>, GuestError> {
        let tier = self.tier();
        if tier.http.is_none() {
            return Err(GuestError {
                fault: None,
                message: format!("component `{}` {NO_HTTP_EXPORT}", self.id),
            });
        }
        let timeout = self.limits.timeout;
        let deadline = Instant::now() + timeout;
        let nested = OutboundBudget::is_nested(&request);
        // The trigger marks a request that came over TLS with the https scheme.
        let https = request.uri().scheme() == Some(&http::uri::Scheme::HTTPS);
        // The trigger's meter (it logs the CPU time), else one of our own for the metrics.
        let meter = request
            .extensions()
            .get::<CpuMeter>()
            .cloned()
            .or_else(|| self.metrics.is_enabled().then(CpuMeter::new));
        let waiting = self.metrics.waiting_for_slot();
        let permit = self.limits.take_slot(&self.engine, nested).await?;
        drop(waiting);
        let charge = self.reserve_memory(!nested).await?;
        // The request's span (the trigger's), parent of this instance's spans.
        let trace = request.extensions().get::<SpanParent>().cloned();
        let instantiate_span = trace.as_ref().map(|t| t.child("instantiate"));
        let mut store = self.new_store(
            &tier.engine,
            deadline,
            OutboundBudget::of(&request),
            charge,
            trace,
            None,
        )?;
        let (tx, rx) = futures::channel::oneshot::channel();
        let this = self.clone();
        let lane = match self.limits.over_share() {
            true => Laned::start_slow,
            false => Laned::start_within_share,
        };
        let metrics = self.metrics.clone();
        let task = spawn_for_request(lane(metered_instance(metrics, meter, async move {
            let result = async {
                let (pre, _) = tier.http.as_ref().expect("checked before spawning");
                let instantiating = Instant::now();
                let proxy = pre.instantiate_async(&mut store).await;
                this.metrics.instantiated(instantiating.elapsed());
                if let (Some(mut span), Err(err)) = (instantiate_span, &proxy) {
                    span.fail(format!("{err:#}"));
                }
                let proxy = proxy?;
                if let (Proxy::P2(guest), true) = (&proxy, https) {
                    return run_p2_over_tls(&mut store, guest, request, tx).await;
                }
                let prepared = Prepared::new(
                    store.as_context_mut(),
                    &proxy,
                    request,
                    <Host as wasmtime_wasi_http::WasiHttpView>::http,
                    tx,
                )?;
                store
                    .run_concurrent(async |accessor| {
                        prepared.run(accessor, std::future::pending()).await?;
                        // A WASI 0.3 guest keeps writing the body after returning the
                        // response; keep its tasks running until they are all done.
                        std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
                        wasmtime::Result::<bool>::Ok(true)
                    })
                    .await??;
                wasmtime::Result::Ok(())
            };
            // Also after its response head was sent: no instance outlives its deadline
            // holding a slot.
            let result = within_hard_stop(deadline, timeout, result).await;
            let fault = store.data().recorded_fault();
            let memory_peak = store.data().limiter.peak();
            // The slot frees only once the instance is gone.
            drop(store);
            drop(permit);
            ((result, fault), memory_peak)
        })));
        // Until the response is fully sent, a client that goes away cancels the instance.
        let mut client_gone = ClientGone {
            task: Some(task.abort_handle()),
            component: self.id.clone(),
            started: Instant::now(),
        };

        let wait_until = tokio::time::Instant::from_std(deadline + DEADLINE_SLACK);
        let outcome = match tokio::time::timeout_at(wait_until, rx).await {
            Ok(Ok(Ok(response))) => {
                return Ok(response.map(|body| {
                    CancelOnAbandon {
                        inner: body,
                        client_gone: Some(client_gone),
                    }
                    .boxed_unsync()
                }));
            }
            Ok(Ok(Err(err))) => Some(err),
            Ok(Err(_canceled)) => None,
            Err(_elapsed) => {
                client_gone.task = None;
                task.abort();
                return Err(GuestError {
                    fault: Some(GuestFault::Deadline(timeout)),
                    message: "no response before the deadline".to_owned(),
                });
            }
        };
        // The guest failed before producing a response; collect why from the task.
        client_gone.task = None;
        let mut task = task;
        let (result, recorded) = match tokio::time::timeout_at(wait_until, &mut task).await {
            Ok(Ok(done)) => done,
            Ok(Err(join)) => (
                Err(wasmtime::Error::msg(format!("guest task failed: {join}"))),
                None,
            ),
            Err(_elapsed) => {
                // Stuck outside wasm (a host call the epoch cannot interrupt): drop the
                // instance so its slot frees.
                task.abort();
                (
                    Err(wasmtime::Error::new(GuestFault::Deadline(timeout))),
                    None,
                )
            }
        };
        // The task's error first: a trap (a panic, a stack overflow) reaches the response
        // channel only as "never invoked `response-outparam::set`", which hides why.
        let err = result.err().or(outcome);
        let fault = err
            .as_ref()
            .and_then(|e| e.downcast_ref::<GuestFault>().cloned())
            .or(recorded)
            .or_else(|| (Instant::now() >= deadline).then_some(GuestFault::Deadline(timeout)));
        let message = match err {
            Some(err) => self.describe_failure(&err),
            None => "the guest returned without sending a response".to_owned(),
        };
        Err(GuestError { fault, message })
    }
}

/// What a WASI command run gets ([`LoadedComponent::run_command`]).
#[derive(Debug, Clone, Default)]
pub struct CommandInput {
    /// Its arguments, the program name first.
    pub args: Vec<String>,
    /// Environment variables, after (and over) the component's own.
    pub env: Vec<(String, String)>,
    /// Its whole stdin.
    pub stdin: bytes::Bytes,
    /// The most it may write to stdout, in bytes.
    pub max_output: usize,
}

/// How [`LoadedComponent::run_instance`] sets up an instance.
struct InstanceSetup<'a> {
    /// The trigger type its metrics are counted under.
    trigger: &'static str,
    trace: Option<SpanParent>,
    /// The engine of the code it runs.
    engine: &'a wasmtime::Engine,
    /// A command's streams, or `None` for the usual (logged) ones.
    command: Option<CommandIo>,
    budget: OutboundBudget,
    /// An in-process request: fails at once instead of waiting for a slot or budget.
    nested: bool,
    /// The trigger's CPU meter (it logs the CPU time), else one of our own for the
    /// metrics.
    meter: Option<CpuMeter>,
}

impl<'a> InstanceSetup<'a> {
    /// The set-up of an instance answering an HTTP request with `request`'s extensions:
    /// its span, and for an in-process request the caller's outbound budget (such a
    /// request fails at once instead of waiting for an instance slot).
    fn for_request(
        request: &http::Extensions,
        engine: &'a wasmtime::Engine,
        command: Option<CommandIo>,
    ) -> Self {
        Self {
            trigger: "http",
            trace: request.get::<SpanParent>().cloned(),
            engine,
            command,
            budget: OutboundBudget::of_extensions(request),
            nested: request.get::<OutboundBudget>().is_some(),
            meter: request.get::<CpuMeter>().cloned(),
        }
    }
}

/// A command instance's WASI streams.
struct CommandIo {
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: bytes::Bytes,
    stdout: MemoryOutputPipe,
}

/// The call a trigger makes in a fresh store: instantiate its export and call it.
pub type EventCall<R> = Box<
    dyn for<'a> FnOnce(
            &'a mut Store<Host>,
        )
            -> std::pin::Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>
        + Send,
>;

impl LoadedComponent {
    /// Runs one event (a Redis message, a cron tick, …) in a fresh instance: `call`
    /// gets a fresh store and instantiates the component's export in it. The same limits
    /// as a request apply: an instance slot and memory budget (waited for), the memory
    /// cap, the deadline (from when the slot is taken), the slow lane; faults are
    /// classified as for requests, and recorded in the component's metrics under the
    /// trigger type `trigger` (`redis`, `cron`, …). When the event is traced, `trace` is
    /// its span (the trigger's, see [`wisp_telemetry::Tracing::event_span`]): the
    /// instance's capability calls become its children. Dropping the future cancels the
    /// instance.
    pub async fn run_event<R: Send + 'static>(
        self: &Arc<Self>,
        trigger: &'static str,
        trace: Option<SpanParent>,
        call: EventCall<R>,
    ) -> Result<R, GuestError> {
        // Event components always run optimised code (see `instance_pre`).
        let engine = self.engine.engine().clone();
        let instance = InstanceSetup {
            trigger,
            trace,
            engine: &engine,
            command: None,
            budget: OutboundBudget::default(),
            nested: false,
            meter: None,
        };
        self.run_instance(instance, call).await
    }

    /// Runs the component as a WASI command in a fresh instance (`wasi:cli/run`, what
    /// the wagi executor calls): `input`'s arguments, environment (after the
    /// component's own) and stdin; returns what it wrote to stdout. Its stderr is logged
    /// as any guest's; it is counted as an `http` request. The limits of
    /// [`Self::run_event`] apply; exiting with a non-zero code, or writing more than
    /// `input.max_output` bytes, fails the run.
    ///
    /// `request` is the extensions of the HTTP request it answers: its span, and for an
    /// in-process request the caller's outbound budget (such a request fails at once
    /// instead of waiting for an instance slot, as in [`Self::handle`]).
    pub async fn run_command(
        self: &Arc<Self>,
        request: &http::Extensions,
        input: CommandInput,
    ) -> Result<bytes::Bytes, GuestError> {
        let tier = self.tier();
        let pre = tier.pre.clone();
        let Some(command) = tier.command else {
            return Err(GuestError {
                fault: None,
                message: format!(
                    "component `{}` is not a WASI command (it exports {}); build it as a program with `main`",
                    self.id, self.exports
                ),
            });
        };
        let stdout = MemoryOutputPipe::new(input.max_output);
        let io = CommandIo {
            args: input.args,
            env: input.env,
            stdin: input.stdin,
            stdout: stdout.clone(),
        };
        let id = self.id.clone();
        let call: EventCall<()> = Box::new(move |store| {
            Box::pin(async move {
                let instance = pre.instantiate_async(&mut *store).await?;
                let run =
                    instance.get_typed_func::<(), (Result<(), ()>,)>(&mut *store, &command)?;
                match run.call_async(&mut *store, ()).await.map(|(ran,)| ran) {
                    Ok(Ok(())) => Ok(()),
                    // As Spin does: the output still counts (a CGI program may report a
                    // failure after writing its response).
                    Ok(Err(())) => {
                        tracing::warn!(component = %id, "component `{id}`: its main returned a failure");
                        Ok(())
                    }
                    Err(err) => match err.downcast_ref::<wasmtime_wasi::I32Exit>() {
                        Some(wasmtime_wasi::I32Exit(0)) => Ok(()),
                        Some(wasmtime_wasi::I32Exit(code)) => {
                            Err(wasmtime::format_err!("exited with code {code}"))
                        }
                        None => Err(err),
                    },
                }
            })
        });
        let instance = InstanceSetup::for_request(request, &tier.engine, Some(io));
        self.run_instance(instance, call).await?;
        Ok(stdout.contents())
    }

    /// Calls an HTTP export other than `wasi:http` (Spin 1.x's
    /// `fermyon:spin/inbound-http`) in a fresh instance: `call` gets the component's
    /// current pre-linked code (baseline or optimised) and builds the call on it. Counted
    /// as an `http` request; the limits and the in-process rules of [`Self::run_command`]
    /// apply, `request` being the extensions of the HTTP request it answers.
    pub async fn run_http_call<R: Send + 'static>(
        self: &Arc<Self>,
        request: &http::Extensions,
        call: impl FnOnce(wasmtime::component::InstancePre<Host>) -> EventCall<R>,
    ) -> Result<R, GuestError> {
        let tier = self.tier();
        let call = call(tier.pre.clone());
        let instance = InstanceSetup::for_request(request, &tier.engine, None);
        self.run_instance(instance, call).await
    }

    async fn run_instance<R: Send + 'static>(
        self: &Arc<Self>,
        instance: InstanceSetup<'_>,
        call: EventCall<R>,
    ) -> Result<R, GuestError> {
        let InstanceSetup {
            trigger,
            trace,
            engine,
            command,
            budget,
            nested,
            meter,
        } = instance;
        let timeout = self.limits.timeout;
        let started = Instant::now();
        let waiting = self.metrics.waiting_for_slot();
        let permit = self.limits.take_slot(&self.engine, nested).await?;
        drop(waiting);
        let charge = self.reserve_memory(!nested).await?;
        // The deadline starts once the instance has a slot, as for requests that queue.
        let deadline = Instant::now() + timeout;
        let mut store = self.new_store(engine, deadline, budget, charge, trace, command)?;
        // Aborted when this future is dropped (trigger shutdown) or the deadline passes
        // while the guest waits on a host call the epoch cannot interrupt: either way the
        // instance and its slot go.
        let lane = match self.limits.over_share() {
            true => Laned::start_slow,
            false => Laned::start_within_share,
        };
        let meter = meter.or_else(|| self.metrics.is_enabled().then(CpuMeter::new));
        let metrics = self.metrics.clone();
        let mut task = AbortOnDrop(spawn_for_request(lane(metered_instance(
            metrics,
            meter,
            async move {
                let result = within_hard_stop(deadline, timeout, call(&mut store)).await;
                let fault = store.data().recorded_fault();
                let memory_peak = store.data().limiter.peak();
                drop(store);
                drop(permit);
                ((result, fault), memory_peak)
            },
        ))));
        let wait_until = tokio::time::Instant::from_std(deadline + DEADLINE_SLACK);
        let (result, recorded) = match tokio::time::timeout_at(wait_until, &mut task.0).await {
            Ok(Ok(done)) => done,
            Ok(Err(join)) => (
                Err(wasmtime::Error::msg(format!("guest task failed: {join}"))),
                None,
            ),
            Err(_elapsed) => (
                Err(wasmtime::Error::new(GuestFault::Deadline(timeout))),
                None,
            ),
        };
        drop(task);
        let result = result.map_err(|err| GuestError {
            fault: err
                .downcast_ref::<GuestFault>()
                .cloned()
                .or(recorded)
                .or_else(|| (Instant::now() >= deadline).then_some(GuestFault::Deadline(timeout))),
            message: self.describe_failure(&err),
        });
        let outcome = match &result {
            Ok(_) => wisp_metrics::Outcome::Ok,
            Err(err) => err.outcome(),
        };
        self.metrics
            .request(trigger, None, outcome, started.elapsed());
        result
    }
}

impl LoadedComponent {
    /// A failed instance's error on one line (it goes into the request's log line). A trap
    /// carries its wasm backtrace as context, a line per frame: the line names the frames
    /// nearest the trap instead, and the whole backtrace goes to the debug log.
    fn describe_failure(&self, err: &wasmtime::Error) -> String {
        let Some(trace) = err.downcast_ref::<wasmtime::WasmBacktrace>() else {
            return format!("{err:#}");
        };
        let trace = trace.to_string();
        tracing::debug!("component `{}` trapped; {trace}", self.id);
        let causes: Vec<String> = err
            .chain()
            .map(|e| e.to_string())
            .filter(|text| *text != trace)
            .collect();
        // wasmtime's frame lines: "  0:   0x3dc9 - module!function" (names demangled).
        let nearest: Vec<&str> = trace
            .lines()
            .filter_map(|line| line.split_once(" - ").map(|(_, frame)| frame.trim()))
            .take(NEAREST_FRAMES)
            .collect();
        match nearest.is_empty() {
            true => causes.join(": "),
            false => format!("{} (in {})", causes.join(": "), nearest.join(" < ")),
        }
    }
}

/// How many frames of a trap's backtrace its log line names.
const NEAREST_FRAMES: usize = 3;

/// Runs an instance (a future that ends with its output and its memory peak) counted as
/// alive, its CPU time metered into `meter`, then records its end. The end is recorded
/// out here, once the metered future's last poll has been counted.
async fn metered_instance<T>(
    metrics: ComponentMetrics,
    meter: Option<CpuMeter>,
    instance: impl Future<Output = (T, u64)>,
) -> T {
    let mut end = InstanceEnd {
        _alive: metrics.instance_alive(),
        metrics,
        meter: meter.clone(),
        memory_peak: None,
    };
    let (output, memory_peak) = CpuMetered::new(instance, meter).await;
    end.memory_peak = Some(memory_peak);
    output
}

/// Records an instance's end when dropped, also when it was cancelled (its client went
/// away, its deadline passed in a host call): the CPU it burnt until then counts.
struct InstanceEnd {
    metrics: ComponentMetrics,
    meter: Option<CpuMeter>,
    /// Known when the instance ran to its end.
    memory_peak: Option<u64>,
    _alive: wisp_metrics::GaugeGuard,
}

impl Drop for InstanceEnd {
    fn drop(&mut self) {
        let cpu = self.meter.as_ref().map_or(Duration::ZERO, CpuMeter::used);
        self.metrics.instance_ended(self.memory_peak, cpu);
    }
}

/// Cancels an instance whose client went away before its response was fully sent: the
/// guest would otherwise burn its CPU and its slot until the deadline for nobody.
struct ClientGone {
    /// `None` once there is nothing to cancel (the response was sent, or the instance
    /// already ended).
    task: Option<tokio::task::AbortHandle>,
    component: Arc<str>,
    started: Instant,
}

impl Drop for ClientGone {
    fn drop(&mut self) {
        if let Some(task) = self.task.take()
            && !task.is_finished()
        {
            task.abort();
            tracing::warn!(
                component = %self.component,
                "component `{}`: the client went away after {:.1?}; cancelled its instance",
                self.component,
                self.started.elapsed()
            );
        }
    }
}

/// The guest's response body; dropped before its end (the client went away), it cancels
/// the instance. Once the body has ended the instance may go on (a WASI 0.3 guest can work
/// after responding) until its deadline.
struct CancelOnAbandon {
    inner: WasiBody,
    client_gone: Option<ClientGone>,
}

impl http_body::Body for CancelOnAbandon {
    type Data = bytes::Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(None) = polled
            && let Some(mut gone) = self.client_gone.take()
        {
            gone.task = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for CancelOnAbandon {
    fn drop(&mut self) {
        // A body that had nothing more to send (hyper does not poll an empty body) is
        // complete, not abandoned.
        if http_body::Body::is_end_stream(&self.inner)
            && let Some(gone) = self.client_gone.as_mut()
        {
            gone.task = None;
        }
    }
}

/// Aborts the task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a component cannot serve HTTP.
const NO_HTTP_EXPORT: &str = "has no HTTP export: it must export `wasi:http/incoming-handler@0.2.x` or `wasi:http/handler@0.3.0` (build it as an HTTP component, e.g. with the Spin SDK)";

/// Runs a WASI 0.2 handler for a request that came over TLS. wasmtime 48's `Prepared`
/// tells every 0.2 guest its request scheme is `http`; this does what it does, with
/// `https`. The outcome reaches the caller through `tx` as with `Prepared`.
async fn run_p2_over_tls(
    store: &mut Store<Host>,
    guest: &wasmtime_wasi_http::p2::bindings::Proxy,
    request: http::Request<WasiBody>,
    tx: futures::channel::oneshot::Sender<wasmtime::Result<http::Response<WasiBody>>>,
) -> wasmtime::Result<()> {
    use wasmtime_wasi_http::WasiHttpView;
    use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
    const NO_RESPONSE: &str = "guest never invoked `response-outparam::set` method";
    let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
    let incoming = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Https, request)?;
    let out = store
        .data_mut()
        .http()
        .new_response_outparam_from_callback({
            let tx = tx.clone();
            move |value| {
                if let Some(tx) = tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = tx.send(value.map_err(Into::into));
                }
            }
        })?;
    let handler = guest.wasi_http_incoming_handler().func_handle();
    let result = store
        .run_concurrent(async |accessor| {
            let called = handler.call_concurrent(accessor, (incoming, out)).await;
            // As with `Prepared`: a guest that keeps writing its body after `set` runs on.
            std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
            called
        })
        .await?;
    if let Some(tx) = tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
        let _ = tx.send(result.and_then(|()| Err(wasmtime::format_err!("{NO_RESPONSE}"))));
    }
    Ok(())
}
