//! Two lanes for running instances, so guests that spin cannot starve the rest.
//!
//! Every instance starts on the server's own runtime (the fast lane). One that has spent
//! more than [`SLOW_AFTER`] inside its polls (time executing wasm or host code, not time
//! waiting) is moved to a second runtime whose threads run at the lowest CPU priority
//! (the idle scheduling class, or nice 19 where that is refused). It keeps running there, at full speed when the machine is otherwise idle,
//! but the kernel gives the fast lane's threads the CPU first, so short requests keep
//! their latency while some guests loop until their deadline. The epoch ticker makes a
//! running guest yield every tick, which is what ends a poll and lets the move happen.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
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
                ON_SLOW_LANE.set(true);
                lower_this_threads_priority();
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

std::thread_local! {
    static ON_SLOW_LANE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is one of the slow lane's.
pub fn on_slow_lane() -> bool {
    ON_SLOW_LANE.get()
}

/// The slow lane's runtime, for an embedder's own low-priority tasks (a node's
/// connections to its worker process); `None` if it cannot be built.
pub fn slow_lane_handle() -> Option<tokio::runtime::Handle> {
    slow_lane().cloned()
}

/// How long after another app's light start a busy app's new instances keep starting
/// in the slow lane. Longer than the pauses of a rarely called app: with a second, a
/// flood was back on the fast lane (and in the node, not its worker) by each call of an
/// app called every few seconds, and that call queued behind the flood's instances.
const SHARE_WINDOW: Duration = Duration::from_secs(10);

/// Which apps must give way: engine-wide, the last times apps with few instances in
/// flight (light apps) started one. A busy app (more in flight than its share) starts its
/// new instances in the slow lane only while another app has been light within
/// [`SHARE_WINDOW`]; alone, it keeps the fast lane and its full throughput.
#[derive(Debug)]
pub struct FairShare {
    epoch: Instant,
    /// The last light start, and the last one by another app before it: a busy app's own
    /// light starts (as its load begins, or in a lull) then do not hide another app's.
    light: std::sync::Mutex<[LightStart; 2]>,
}

/// An app's last light start.
#[derive(Debug, Clone, Copy, Default)]
struct LightStart {
    /// Which app (an address that identifies the app's limits; 0: none yet).
    app: usize,
    /// Milliseconds since the epoch.
    at_ms: u64,
}

impl Default for FairShare {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            light: std::sync::Mutex::default(),
        }
    }
}

impl FairShare {
    /// Records an instance start of app `app` and says whether it goes to the slow lane.
    pub fn starts_slow(&self, app: usize, busy: bool) -> bool {
        self.starts_slow_at(app, busy, self.epoch.elapsed().as_millis() as u64)
    }

    /// [`FairShare::starts_slow`] at `now_ms` after the epoch.
    fn starts_slow_at(&self, app: usize, busy: bool, now_ms: u64) -> bool {
        let mut light = self.light.lock().unwrap_or_else(|e| e.into_inner());
        if !busy {
            if light[0].app != app {
                light[1] = light[0];
            }
            light[0] = LightStart { app, at_ms: now_ms };
            return false;
        }
        let other = if light[0].app != app {
            light[0]
        } else {
            light[1]
        };
        other.app != 0 && now_ms.saturating_sub(other.at_ms) < SHARE_WINDOW.as_millis() as u64
    }
}

/// Puts the calling thread in the idle scheduling class (`SCHED_IDLE`): the kernel
/// preempts it as soon as a normal thread wakes, where a niced thread would keep the CPU
/// for the rest of its time slice (milliseconds). Falls back to the lowest nice value.
/// Threads it starts afterwards inherit the class.
pub fn lower_this_threads_priority() {
    if let Err(err) = set_idle_policy() {
        tracing::debug!("cannot put the slow lane in the idle scheduling class: {err}");
        // Per-thread nice value (Linux applies setpriority to one thread id).
        if let Err(err) =
            rustix::process::setpriority_process(Some(rustix::thread::gettid()), SLOW_NICE)
        {
            tracing::debug!("cannot lower the slow lane's priority: {err}");
        }
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_idle_policy() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid, initialised `sched_param` that outlives the call, and pid
    // 0 names the calling thread; lowering one's own policy needs no privilege.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(not(target_os = "linux"))]
fn set_idle_policy() -> std::io::Result<()> {
    Err(std::io::Error::other("only Linux has SCHED_IDLE"))
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

    /// Starts `future` where it is polled, for an instance of an app within its share;
    /// the connection the request came on returns to the serving threads if an earlier
    /// request had sent it to the slow lane ([`keep_connection_on_serving_threads`]).
    pub(crate) fn start_within_share(future: F) -> Self {
        keep_connection_on_serving_threads();
        Self::new(future)
    }

    /// Starts `future` in the slow lane at once (where there is one): for an instance of
    /// an app that already has more than its share running. The connection the request
    /// came on follows it there ([`ConnectionLane`]).
    pub(crate) fn start_slow(future: F) -> Self {
        send_connection_to_slow_lane();
        let lane = match slow_lane() {
            Some(slow) => Lane::Slow(slow.spawn(future)),
            None => Lane::Fast(Box::pin(future)),
        };
        Self {
            lane,
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
            if !this.lane.move_to_slow_lane() {
                return Poll::Pending;
            }
            tracing::debug!("instance busy for {:?}; moved to the slow lane", this.busy);
        }
        this.lane.poll_slow(cx, "instance")
    }
}

impl<F> Lane<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// Moves a future that runs where it is polled to the slow lane; false if there is no
    /// slow lane (it then stays).
    fn move_to_slow_lane(&mut self) -> bool {
        let Some(slow) = slow_lane() else {
            return false;
        };
        let Lane::Fast(future) = std::mem::replace(self, Lane::Moving) else {
            unreachable!("only a fast future moves");
        };
        *self = Lane::Slow(slow.spawn(future));
        true
    }

    /// Polls a future that moved to the slow lane (`what` names it in a panic).
    fn poll_slow(&mut self, cx: &mut Context<'_>, what: &str) -> Poll<F::Output> {
        match self {
            Lane::Slow(handle) => match Pin::new(handle).poll(cx) {
                Poll::Ready(Ok(output)) => Poll::Ready(output),
                Poll::Ready(Err(err)) if err.is_panic() => {
                    std::panic::resume_unwind(err.into_panic())
                }
                // Only the owner aborts the task, and it is not polled after that.
                Poll::Ready(Err(err)) => panic!("slow-lane {what} task ended early: {err}"),
                Poll::Pending => Poll::Pending,
            },
            Lane::Fast(_) | Lane::Moving => unreachable!("moved to the slow lane before"),
        }
    }
}

impl<F: Future> Lane<F> {
    /// Cancels a moved future's task in the slow lane (for its owner's drop).
    fn abort_if_moved(&self) {
        if let Lane::Slow(handle) = self {
            handle.abort();
        }
    }
}

impl<F: Future> Drop for Laned<F> {
    fn drop(&mut self) {
        self.lane.abort_if_moved();
    }
}

/// Where a client connection belongs, shared by its [`ConnectionLane`] and its requests.
struct ConnectionHome {
    /// In the slow lane (set by a request whose instance started there, or that went to a
    /// node's worker process), or back on the serving threads (set by a request that did
    /// not).
    slow: AtomicBool,
    /// The serving runtime the connection was accepted on.
    serving: tokio::runtime::Handle,
}

tokio::task_local! {
    static CONNECTION_HOME: Arc<ConnectionHome>;
}

/// Marks the connection the current request came on (if the trigger runs it in a
/// [`ConnectionLane`]) to move to the slow lane.
pub fn send_connection_to_slow_lane() {
    // Outside a connection (an in-process call, a cron event) there is nothing to move.
    let _ = CONNECTION_HOME.try_with(|home| home.slow.store(true, Ordering::Relaxed));
}

/// Marks the connection the current request came on to return to the serving threads,
/// if it had moved to the slow lane: its request is for an app within its share. A
/// connection a load balancer keeps open carries requests for many apps; one request for
/// a flooded app must not leave the others' requests on it to the slow lane.
pub(crate) fn keep_connection_on_serving_threads() {
    let _ = CONNECTION_HOME.try_with(|home| home.slow.store(false, Ordering::Relaxed));
}

/// Spawns a task for the current request where its connection belongs: on the serving
/// runtime when called from the slow lane for a request that does not belong there (its
/// connection moved for an earlier request), else on the current runtime.
pub(crate) fn spawn_for_request<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let serving = match on_slow_lane() {
        true => CONNECTION_HOME
            .try_with(|home| (!home.slow.load(Ordering::Relaxed)).then(|| home.serving.clone()))
            .ok()
            .flatten(),
        false => None,
    };
    match serving {
        Some(serving) => serving.spawn(future),
        None => tokio::spawn(future),
    }
}

/// A client connection's future (reading requests, writing responses) that moves to the
/// slow lane once one of its requests had its instance started there, or went to a node's
/// worker process: its app had more than its share in flight while another app was being
/// served. A flooded app's connections then stop competing with the other apps'
/// connections for the serving threads (a burst of 256 of its responses finishing at once
/// queued every other app's requests behind them), and it keeps the whole machine while it
/// is alone. It comes back to the serving threads when a request on it is for an app
/// within its share ([`keep_connection_on_serving_threads`]). Dropping it cancels it
/// wherever it runs.
pub struct ConnectionLane<F: Future> {
    lane: ConnLane<tokio::task::futures::TaskLocalFuture<Arc<ConnectionHome>, F>>,
    home: Arc<ConnectionHome>,
}

enum ConnLane<F: Future> {
    Serving(Pin<Box<F>>),
    Slow(tokio::task::JoinHandle<Carried<F>>),
    Moving,
}

/// How a connection's stay in the slow lane ends.
enum Carried<F: Future> {
    Done(F::Output),
    Back(Pin<Box<F>>),
}

/// Polls a connection in the slow lane until it ends or is sent back.
struct Carrier<F: Future> {
    connection: Option<Pin<Box<F>>>,
    home: Arc<ConnectionHome>,
}

impl<F: Future> Future for Carrier<F> {
    type Output = Carried<F>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Carried<F>> {
        let this = &mut *self;
        let Some(connection) = this.connection.as_mut() else {
            unreachable!("a carrier is not polled after it finished");
        };
        match connection.as_mut().poll(cx) {
            Poll::Ready(output) => Poll::Ready(Carried::Done(output)),
            Poll::Pending if !this.home.slow.load(Ordering::Relaxed) => {
                let back = this.connection.take().expect("checked above");
                Poll::Ready(Carried::Back(back))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F> ConnectionLane<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// Runs `connection` on the current runtime (the serving one) until one of its
    /// requests goes slow.
    pub fn new(connection: F) -> Self {
        let home = Arc::new(ConnectionHome {
            slow: AtomicBool::new(false),
            serving: tokio::runtime::Handle::current(),
        });
        let scoped = CONNECTION_HOME.scope(home.clone(), connection);
        Self {
            lane: ConnLane::Serving(Box::pin(scoped)),
            home,
        }
    }
}

impl<F> Future for ConnectionLane<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        loop {
            match &mut this.lane {
                ConnLane::Serving(connection) => {
                    if let Poll::Ready(output) = connection.as_mut().poll(cx) {
                        return Poll::Ready(output);
                    }
                    if !this.home.slow.load(Ordering::Relaxed) {
                        return Poll::Pending;
                    }
                    let Some(slow) = slow_lane() else {
                        return Poll::Pending;
                    };
                    let ConnLane::Serving(connection) =
                        std::mem::replace(&mut this.lane, ConnLane::Moving)
                    else {
                        unreachable!("matched above");
                    };
                    this.lane = ConnLane::Slow(slow.spawn(Carrier {
                        connection: Some(connection),
                        home: this.home.clone(),
                    }));
                }
                ConnLane::Slow(handle) => match Pin::new(handle).poll(cx) {
                    Poll::Ready(Ok(Carried::Done(output))) => return Poll::Ready(output),
                    // Polled here again at once (its wakers were the slow lane's); if it
                    // was sent to the slow lane again meanwhile, it moves again.
                    Poll::Ready(Ok(Carried::Back(connection))) => {
                        this.lane = ConnLane::Serving(connection);
                    }
                    Poll::Ready(Err(err)) if err.is_panic() => {
                        std::panic::resume_unwind(err.into_panic())
                    }
                    // Only the owner aborts the task, and it is not polled after that.
                    Poll::Ready(Err(err)) => panic!("slow-lane connection task ended early: {err}"),
                    Poll::Pending => return Poll::Pending,
                },
                ConnLane::Moving => unreachable!("a move completes within one poll"),
            }
        }
    }
}

impl<F: Future> Drop for ConnectionLane<F> {
    fn drop(&mut self) {
        if let ConnLane::Slow(handle) = &self.lane {
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

    /// A connection moves to the slow lane once one of its requests asks for it (its
    /// instance started there), and carries on there; one that never asks stays.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_connection_follows_its_request_to_the_slow_lane() {
        let thread = || {
            (
                std::thread::current().name().map(str::to_owned),
                on_slow_lane(),
            )
        };
        let (before, after) = ConnectionLane::new(async move {
            let before = thread();
            send_connection_to_slow_lane();
            tokio::task::yield_now().await;
            (before, thread())
        })
        .await;
        assert_ne!(before.0.as_deref(), Some("wisp-slow-lane"));
        assert!(!before.1);
        assert_eq!(after.0.as_deref(), Some("wisp-slow-lane"));
        // What a moved connection checks to register its socket with the slow lane.
        assert!(after.1);
        let stays = ConnectionLane::new(async move {
            tokio::task::yield_now().await;
            thread()
        })
        .await;
        assert_ne!(stays.0.as_deref(), Some("wisp-slow-lane"));
        // Outside a connection, asking does nothing (and does not panic).
        send_connection_to_slow_lane();
    }

    /// A connection in the slow lane comes back to the serving threads when a request on
    /// it is for an app within its share, and that request's instance runs there too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_connection_comes_back_for_a_request_within_its_share() {
        let thread = || {
            (
                std::thread::current().name().map(str::to_owned),
                on_slow_lane(),
            )
        };
        let (slow, instance, back, again) = ConnectionLane::new(async move {
            send_connection_to_slow_lane();
            tokio::task::yield_now().await;
            let slow = thread();
            // The next request, for an app within its share.
            keep_connection_on_serving_threads();
            let instance = spawn_for_request(async move { thread() }).await.unwrap();
            tokio::task::yield_now().await;
            let back = thread();
            // And a flooded app's request again.
            send_connection_to_slow_lane();
            tokio::task::yield_now().await;
            (slow, instance, back, thread())
        })
        .await;
        assert_eq!(slow, (Some("wisp-slow-lane".to_owned()), true));
        assert!(
            !instance.1,
            "the instance ran in the slow lane: {instance:?}"
        );
        assert!(!back.1, "the connection stayed in the slow lane: {back:?}");
        assert_ne!(back.0.as_deref(), Some("wisp-slow-lane"));
        assert_eq!(again, (Some("wisp-slow-lane".to_owned()), true));
    }

    /// A busy app gives way only while another app is light; alone it keeps the fast lane.
    #[test]
    fn busy_apps_give_way_only_to_other_apps() {
        let share = FairShare::default();
        assert!(!share.starts_slow(1, true), "nobody else is running");
        assert!(!share.starts_slow(1, false));
        assert!(
            !share.starts_slow(1, true),
            "its own light start does not count"
        );
        assert!(!share.starts_slow(2, false));
        assert!(share.starts_slow(1, true), "app 2 just started an instance");
        assert!(!share.starts_slow(2, false), "light starts never demote");
    }

    /// A busy app keeps giving way through the pauses of an app called every few seconds,
    /// and takes the fast lane back once no other app has started one for the window.
    #[test]
    fn busy_apps_keep_giving_way_through_another_apps_pauses() {
        let share = FairShare::default();
        let window = SHARE_WINDOW.as_millis() as u64;
        assert!(!share.starts_slow_at(2, false, 1_000));
        assert!(share.starts_slow_at(1, true, 1_000 + 5_000));
        assert!(share.starts_slow_at(1, true, 1_000 + window - 1));
        assert!(!share.starts_slow_at(1, true, 1_000 + window));
    }

    /// A busy app's own light start (its load beginning) does not hide another app's.
    #[test]
    fn a_busy_apps_own_light_start_hides_no_other_apps() {
        let share = FairShare::default();
        assert!(!share.starts_slow_at(2, false, 1_000));
        assert!(!share.starts_slow_at(1, false, 1_300));
        assert!(!share.starts_slow_at(1, false, 1_301));
        assert!(
            share.starts_slow_at(1, true, 1_400),
            "app 2 was light 0.4 s ago"
        );
        let window = SHARE_WINDOW.as_millis() as u64;
        assert!(!share.starts_slow_at(1, true, 1_000 + window));
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
