//! Hostile component corpus (issue 16): generated, mutated, truncated and bit-flipped
//! WebAssembly goes through the load path `wisp up` uses (`LoadedApp::load_with_limits`:
//! digest check, compile cache, preview1 componentization, composition with dependencies,
//! linking), and nothing panics, aborts or hangs. Every refusal names the component and says why; every component that
//! loads runs once and finishes within its deadline.
//!
//! All randomness comes from one fixed seed, so a failure names an input (kind and index)
//! that the next run rebuilds byte for byte; the failing input is also kept on disk. To
//! explore further, `WISP_HOSTILE_SEED=<n>` picks another seed and `WISP_HOSTILE_SCALE=<n>`
//! makes n times as many inputs.

use http_body_util::BodyExt;
use std::fmt::Write as _;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wisp_engine::{
    AppLimits, EngineConfig, EventCall, GuestFault, GuestOutput, LoadedApp, LoadedComponent,
    WispEngine,
};
use wisp_host::{AppCapabilities, AppPaths, RuntimeConfig};

/// The seed of the checked-in corpus.
const SEED: u64 = 0x5749_5350_0016_0003;

/// Inputs per kind (times `WISP_HOSTILE_SCALE`).
const SMITH: usize = 560;
const MUTATE: usize = 80;
const TRUNCATE: usize = 260;
const FLIP: usize = 120;

/// The deadline of each run.
const TIMEOUT: Duration = Duration::from_secs(1);
/// How long past its deadline a run may take: the engine's own slack (250 ms) plus
/// scheduling on a busy 2-core machine.
const MARGIN: Duration = Duration::from_secs(2);

/// splitmix64: tiny, deterministic, good enough to pick offsets and feed `Unstructured`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Smith,
    Mutate,
    Truncate,
    Flip,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Smith, Kind::Mutate, Kind::Truncate, Kind::Flip];

    fn name(self) -> &'static str {
        match self {
            Kind::Smith => "smith",
            Kind::Mutate => "mutate",
            Kind::Truncate => "truncate",
            Kind::Flip => "flip",
        }
    }
}

struct Input {
    kind: Kind,
    index: usize,
    /// How it was made, for failure messages.
    origin: String,
    bytes: Vec<u8>,
    /// Loaded as the app's component, or as the dependency of a real one.
    role: Role,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Source,
    /// The `test:calc/adder` dependency of the real `dep-main`: the bytes go through
    /// composition (wac) before compilation.
    Dependency,
}

/// The interface `dep-main` imports and `dep-adder` exports.
const ADDER: &str = "test:calc/adder@0.1.0";

/// A real component the corpus starts from.
struct Seed {
    name: &'static str,
    bytes: Vec<u8>,
    role: Role,
}

impl Seed {
    /// How the input is used, for its origin.
    fn role(&self) -> &'static str {
        match self.role {
            Role::Source => "",
            Role::Dependency => " (as dep-main's dependency)",
        }
    }
}

/// Real components the corpus starts from: WASI 0.2 and 0.3 handlers that answer, trap,
/// spin and grow memory, a dependency (mutated as `dep-main`'s dependency), and one that
/// imports an interface only a dependency provides, and a core module of Spin's
/// pre-component ABI. Mutants that stay valid are compiled in
/// full (about 0.1 s each here), so mutations and bit flips use only the first
/// [`SMALL_SEEDS`], the smallest that cover both WASI versions and composition;
/// truncations, mostly refused at parse time, use all of them.
fn seeds() -> Vec<Seed> {
    [
        ("trap", wisp_test_programs::TRAP, Role::Source),
        ("memhog", wisp_test_programs::MEMHOG, Role::Source),
        ("hello", wisp_test_programs::HELLO, Role::Source),
        ("spin-loop", wisp_test_programs::SPIN_LOOP, Role::Source),
        ("p3-hello", wisp_test_programs::P3_HELLO, Role::Source),
        ("dep-adder", wisp_test_programs::DEP_ADDER, Role::Dependency),
        ("echo", wisp_test_programs::ECHO, Role::Source),
        ("stdio-log", wisp_test_programs::STDIO_LOG, Role::Source),
        ("dep-main", wisp_test_programs::DEP_MAIN, Role::Source),
        // A core module of Spin's pre-component ABI, renamed at load before the adapter.
        (
            "spin-legacy-abi",
            wisp_test_programs::SPIN_LEGACY_ABI_WASIP1,
            Role::Source,
        ),
    ]
    .into_iter()
    .map(|(name, path, role)| Seed {
        name,
        bytes: std::fs::read(path).unwrap(),
        role,
    })
    .collect()
}

const SMALL_SEEDS: usize = 6;

/// A few preview1 functions generated modules may import, so some of them go through the
/// adapter and link against the host's WASI.
const PREVIEW1_IMPORTS: &str = r#"(module
    (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))
    (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
)"#;

/// Core modules from wasm-smith, small enough to compile in milliseconds. A mix of
/// configurations: every proposal wasm-smith knows (wasmtime refuses the ones Wisp leaves
/// off), only the ones Wisp enables, invalid function bodies, preview1 imports.
fn smith_inputs(rng: &mut Rng, count: usize) -> Vec<Input> {
    let preview1 = wat::parse_str(PREVIEW1_IMPORTS).unwrap();
    let memory_export = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
    (0..count)
        .map(|index| {
            let mut config = wasm_smith::Config {
                max_funcs: 6,
                max_instructions: 48,
                max_types: 12,
                max_imports: 6,
                max_exports: 6,
                max_globals: 6,
                max_data_segments: 4,
                max_element_segments: 4,
                max_elements: 16,
                max_tables: 2,
                max_memories: 2,
                max_table_elements: 1_000,
                max_memory32_bytes: 32 << 20,
                max_memory64_bytes: 32 << 20,
                max_nesting_depth: 4,
                ..wasm_smith::Config::default()
            };
            let mut flavour = Vec::new();
            if index % 3 != 0 {
                // Only what Wisp's engine accepts (no GC, so no `externref` either; one
                // table and one memory per module in the pool), so these compile and run.
                config.gc_enabled = false;
                config.reference_types_enabled = false;
                config.exceptions_enabled = false;
                config.threads_enabled = false;
                config.memory64_enabled = false;
                config.max_tables = 1;
                config.max_memories = 1;
                flavour.push("wisp-features");
                match index % 6 {
                    // A wasip1-like module: preview1 imports through the adapter, which
                    // needs the module's memory.
                    1 => {
                        config.available_imports = Some(preview1.clone());
                        config.exports = Some(memory_export.clone());
                        // The exported memory is generated past this limit; no second one.
                        config.max_memories = 0;
                        flavour.push("preview1-imports");
                    }
                    // Nothing to link: componentizes to a component that only runs its
                    // start function.
                    2 => {
                        config.max_imports = 0;
                        config.max_exports = 0;
                        flavour.push("no-imports-or-exports");
                    }
                    _ => {}
                }
            }
            if index % 7 == 3 {
                config.allow_invalid_funcs = true;
                flavour.push("invalid-funcs");
            }
            let len = 256 + rng.below(4096);
            let data = rng.bytes(len);
            let mut module =
                wasm_smith::Module::new(config, &mut arbitrary::Unstructured::new(&data))
                    .expect("wasm-smith falls back to defaults when data runs out");
            // Most generated code must terminate (a trap when its fuel runs out) so runs
            // end quickly; one in ten is left as generated, to meet the deadline instead.
            if index % 10 != 0 && module.ensure_termination(10_000).is_ok() {
                flavour.push("terminating");
            }
            // Some go in as a dependency: componentized, then handed to composition.
            let role = match index % 9 == 5 {
                true => {
                    flavour.push("as dep-main's dependency");
                    Role::Dependency
                }
                false => Role::Source,
            };
            Input {
                kind: Kind::Smith,
                index,
                origin: format!("wasm-smith module ({})", flavour.join(", ")),
                bytes: module.to_bytes(),
                role,
            }
        })
        .collect()
}

/// The top-level sections of a component: `(id, whole section, contents)`.
fn sections(component: &[u8]) -> Vec<(u8, Range<usize>, Range<usize>)> {
    let mut out = Vec::new();
    let mut pos = 8;
    while pos < component.len() {
        let start = pos;
        let id = component[pos];
        pos += 1;
        let (mut size, mut shift) = (0usize, 0);
        loop {
            let byte = component[pos];
            pos += 1;
            size |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        out.push((id, start..pos + size, pos..pos + size));
        pos += size;
    }
    assert_eq!(pos, component.len(), "a well-formed component");
    out
}

fn leb128(mut value: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Component core module sections have id 1.
const CORE_MODULE_SECTION: u8 = 1;

/// Real components with one of their core modules mutated by wasm-mutate and spliced back
/// in: the component model wiring stays, so the mutant reaches validation, compilation and
/// linking of the real thing. (wasm-mutate only mutates core modules.)
fn mutate_inputs(rng: &mut Rng, seeds: &[Seed], count: usize) -> Vec<Input> {
    let mut inputs = Vec::with_capacity(count);
    let mut attempts = 0;
    while inputs.len() < count {
        attempts += 1;
        assert!(attempts < count * 20, "wasm-mutate keeps failing");
        let seed = &seeds[rng.below(seeds.len())];
        let component = &seed.bytes;
        let modules: Vec<_> = sections(component)
            .into_iter()
            .enumerate()
            .filter(|(_, (id, _, _))| *id == CORE_MODULE_SECTION)
            .collect();
        let (which, (_, _, contents)) = modules[rng.below(modules.len())].clone();
        let module = &component[contents];
        let mutate_seed = rng.next();
        let mut mutate = wasm_mutate::WasmMutate::default();
        mutate
            .seed(mutate_seed)
            .fuel(1_000)
            .preserve_semantics(false);
        let Some(mutated) = mutate.run(module).ok().and_then(|mut m| m.next()?.ok()) else {
            continue;
        };
        let mut bytes = component[..8].to_vec();
        for (i, (id, whole, _)) in sections(component).into_iter().enumerate() {
            if i == which {
                bytes.push(id);
                leb128(mutated.len(), &mut bytes);
                bytes.extend_from_slice(&mutated);
            } else {
                bytes.extend_from_slice(&component[whole]);
            }
        }
        inputs.push(Input {
            kind: Kind::Mutate,
            index: inputs.len(),
            origin: format!(
                "{}{} with its section {which} (a core module) mutated, seed {mutate_seed:#x}",
                seed.name,
                seed.role()
            ),
            bytes,
            role: seed.role,
        });
    }
    inputs
}

/// Real components cut short: a few bytes in (header), at section boundaries and one byte
/// either side, and anywhere.
fn truncate_inputs(rng: &mut Rng, seeds: &[Seed], count: usize) -> Vec<Input> {
    (0..count)
        .map(|index| {
            let seed = &seeds[index % seeds.len()];
            let component = &seed.bytes;
            let at = match index % 4 {
                0 => rng.below(16),
                1 => {
                    let boundaries = sections(component);
                    let (_, whole, _) = &boundaries[rng.below(boundaries.len())];
                    (whole.start + rng.below(3)).saturating_sub(1)
                }
                _ => rng.below(component.len()),
            };
            Input {
                kind: Kind::Truncate,
                index,
                origin: format!(
                    "{}{} truncated to {at} of {} bytes",
                    seed.name,
                    seed.role(),
                    component.len()
                ),
                bytes: component[..at].to_vec(),
                role: seed.role,
            }
        })
        .collect()
}

/// Real components with a few random bits flipped.
fn flip_inputs(rng: &mut Rng, seeds: &[Seed], count: usize) -> Vec<Input> {
    (0..count)
        .map(|index| {
            let seed = &seeds[index % seeds.len()];
            let mut bytes = seed.bytes.clone();
            let flips = [1, 1, 2, 4, 8][rng.below(5)];
            let mut at = Vec::new();
            for _ in 0..flips {
                let (byte, bit) = (rng.below(bytes.len()), rng.below(8));
                bytes[byte] ^= 1 << bit;
                at.push(format!("{byte}.{bit}"));
            }
            Input {
                kind: Kind::Flip,
                index,
                origin: format!(
                    "{}{} with bits {} flipped",
                    seed.name,
                    seed.role(),
                    at.join(", ")
                ),
                bytes,
                role: seed.role,
            }
        })
        .collect()
}

/// What happened to one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Refused(Stage),
    /// An HTTP response, any status.
    Answered,
    /// The request failed in the guest (trap, no response, memory cap).
    Trapped,
    /// The request or instantiation hit the deadline.
    Deadline,
    /// No HTTP export: instantiated (its start function ran) without fault.
    Instantiated,
    /// No HTTP export: instantiation trapped or was refused.
    InstantiateFailed,
}

/// Where on the load path an input was refused, from the refusal's wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Not WebAssembly at all.
    Magic,
    /// A core module the preview1 adapter could not wrap.
    Componentize,
    /// A dependency that could not be plugged in.
    Compose,
    /// Wasmtime's validation or compilation.
    Compile,
    /// Compiled, but not loadable into the pool.
    Pool,
    /// Imports the host does not provide.
    Link,
    Other,
}

impl Stage {
    const ALL: [Stage; 7] = [
        Stage::Magic,
        Stage::Componentize,
        Stage::Compose,
        Stage::Compile,
        Stage::Pool,
        Stage::Link,
        Stage::Other,
    ];

    fn of(message: &str) -> Self {
        [
            ("cannot compose its dependencies", Stage::Compose),
            ("is not a WebAssembly file", Stage::Magic),
            ("cannot be turned into a component", Stage::Componentize),
            ("is not a valid component", Stage::Compile),
            ("cannot load compiled code", Stage::Pool),
            ("cannot be linked", Stage::Link),
        ]
        .into_iter()
        .find(|(words, _)| message.contains(words))
        .map_or(Stage::Other, |(_, stage)| stage)
    }

    fn name(self) -> &'static str {
        match self {
            Stage::Magic => "not wasm",
            Stage::Componentize => "not componentizable",
            Stage::Compose => "not composable",
            Stage::Compile => "invalid",
            Stage::Pool => "too big for the pool",
            Stage::Link => "unlinkable",
            Stage::Other => "other",
        }
    }
}

/// Every panic in the process, wherever it happens (the test thread, tokio workers,
/// wasmtime's compile threads), with its thread and location.
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn count_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        PANICS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("thread `{}`: {info}", thread.name().unwrap_or("?")));
        default(info);
    }));
}

fn panics_so_far() -> usize {
    PANICS.lock().unwrap_or_else(|e| e.into_inner()).len()
}

/// The error and its sources, as the CLI prints them.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        let _ = write!(text, ": {err}");
        source = err.source();
    }
    text
}

struct Harness {
    /// The component hostile dependencies are plugged into.
    dep_main: Vec<u8>,
    rt: tokio::runtime::Runtime,
    engine: WispEngine,
    /// The same, starting every HTTP component on baseline (Winch) code: every other
    /// input loads through it.
    baseline_engine: WispEngine,
    dir: tempfile::TempDir,
    limits: AppLimits,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let engine = |baseline_compile_min_bytes| {
            WispEngine::new(EngineConfig {
                max_instances: 4,
                request_timeout: TIMEOUT,
                cache_dir: Some(dir.path().join("cache")),
                baseline_compile_min_bytes,
                ..EngineConfig::default()
            })
            .unwrap()
        };
        let baseline_engine = engine(Some(0));
        let engine = engine(None);
        let limits = AppLimits {
            // Small, so a memory hog reaches the cap quickly; some generated modules ask
            // for more than this up front.
            memory_limit: Some(16 << 20),
            request_timeout: Some(TIMEOUT),
            guest_output: GuestOutput::None,
            ..AppLimits::default()
        };
        Self {
            dep_main: std::fs::read(wisp_test_programs::DEP_MAIN).unwrap(),
            rt,
            engine,
            baseline_engine,
            dir,
            limits,
        }
    }

    /// Loads `input` as the only component of an app, as `wisp up app.wasm` does, and
    /// runs it once if it loads. `Err` says which property was broken.
    fn try_input(&self, input: &Input) -> Result<Outcome, String> {
        let name = format!("{}-{:04}", input.kind.name(), input.index);
        let path = self.dir.path().join(format!("{name}.wasm"));
        let dependency = self.dir.path().join(format!("{name}-dependency.wasm"));
        let main = match input.role {
            Role::Source => &input.bytes,
            Role::Dependency => &self.dep_main,
        };
        std::fs::write(&path, main).unwrap();
        let mut locked = wisp_app::from_component_file(&path).map_err(|e| chain(&e))?;
        if input.role == Role::Dependency {
            std::fs::write(&dependency, &input.bytes).unwrap();
            locked.components[0].dependencies.insert(
                ADDER.to_owned(),
                wisp_app::LockedDependency {
                    source: wisp_app::LockedSource {
                        content_type: "application/wasm".to_owned(),
                        path: dependency.clone(),
                        digest: wisp_app::sha256_digest(&input.bytes),
                    },
                    export: None,
                    inherit: Default::default(),
                },
            );
        }
        let id = locked.components[0].id.clone();
        let paths = AppPaths {
            state_dir: self.dir.path().join("state"),
            app_dir: None,
            files_dir: Some(self.dir.path().join("files")),
        };
        let capabilities = self
            .rt
            .block_on(AppCapabilities::build(
                &locked,
                &RuntimeConfig::default(),
                &paths,
            ))
            .map_err(|e| chain(&e))?;
        // Inside the runtime, as `Runtime::load` calls it.
        let rt = self.rt.enter();
        let loaded = catch_unwind(AssertUnwindSafe(|| {
            LoadedApp::load_with_limits(
                match input.index % 2 {
                    0 => &self.engine,
                    _ => &self.baseline_engine,
                },
                locked,
                &paths.files_dir(),
                &capabilities,
                &self.limits,
            )
        }))
        .map_err(|_| "load panicked".to_owned())?;
        drop(rt);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&dependency);
        let app = match loaded {
            Ok(app) => app,
            Err(err) => {
                let message = chain(&err);
                let named = format!("`{id}`");
                let rest = message.replacen(&named, "", 1);
                // Names from the component's bytes must not reach a terminal raw.
                // (`printable` leaves a message without such characters as it is.)
                if wisp_engine::printable(&message) != message {
                    return Err(format!("refusal carries unescaped characters: {message:?}"));
                }
                return match message.contains(&named) && rest.split_whitespace().count() >= 3 {
                    true => Ok(Outcome::Refused(Stage::of(&rest))),
                    false => Err(format!(
                        "refusal does not name `{id}` and a reason: {message}"
                    )),
                };
            }
        };
        let component = app
            .component(&id)
            .expect("the app's only component")
            .clone();
        let started = Instant::now();
        let ran = catch_unwind(AssertUnwindSafe(|| {
            self.rt.block_on(async {
                tokio::time::timeout(TIMEOUT + MARGIN, run_once(component)).await
            })
        }))
        .map_err(|_| "run panicked".to_owned())?;
        let took = started.elapsed();
        match ran {
            Ok(outcome) if took <= TIMEOUT + MARGIN => Ok(outcome),
            Ok(_) => Err(format!(
                "ran {took:.1?}, past its {TIMEOUT:?} deadline + {MARGIN:?}"
            )),
            Err(_) => Err(format!("still running after {took:.1?}")),
        }
    }
}

/// One request if the component serves HTTP, else one instantiation (its start
/// function), both under the app's limits.
async fn run_once(component: Arc<LoadedComponent>) -> Outcome {
    let deadline = |fault: &Option<GuestFault>| matches!(fault, Some(GuestFault::Deadline(_)));
    if component.http_export().is_some() {
        let request = http::Request::builder()
            .uri("http://localhost/hostile?x=1")
            .body(
                http_body_util::Empty::new()
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .unwrap();
        return match component.handle(request).await {
            // The body streams while the guest runs on; reading it to the end (or to the
            // error the deadline makes) is part of finishing.
            Ok(response) => {
                let _ = response.into_body().collect().await;
                Outcome::Answered
            }
            Err(err) if deadline(&err.fault) => Outcome::Deadline,
            Err(_) => Outcome::Trapped,
        };
    }
    let pre = component.instance_pre();
    let call: EventCall<()> = Box::new(move |store| {
        Box::pin(async move { pre.instantiate_async(store).await.map(drop) })
    });
    match component.run_event("test", None, call).await {
        Ok(()) => Outcome::Instantiated,
        Err(err) if deadline(&err.fault) => Outcome::Deadline,
        Err(_) => Outcome::InstantiateFailed,
    }
}

/// `1234` → `1,234`, for the summary.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn hostile_inputs_are_refused_or_run_without_panics_or_hangs() {
    let started = Instant::now();
    count_panics();
    let seeds = seeds();
    let knob = |name: &str, default: u64| {
        std::env::var(name)
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
            })
            .unwrap_or(default)
    };
    let seed = knob("WISP_HOSTILE_SEED", SEED);
    let scale = knob("WISP_HOSTILE_SCALE", 1) as usize;
    let mut rng = Rng(seed);
    let mut inputs = smith_inputs(&mut rng, SMITH * scale);
    inputs.extend(mutate_inputs(
        &mut rng,
        &seeds[..SMALL_SEEDS],
        MUTATE * scale,
    ));
    inputs.extend(truncate_inputs(&mut rng, &seeds, TRUNCATE * scale));
    inputs.extend(flip_inputs(&mut rng, &seeds[..SMALL_SEEDS], FLIP * scale));
    assert!(inputs.len() >= 1_000);

    let harness = Harness::new();
    let mut outcomes: Vec<(Kind, Outcome)> = Vec::new();
    let mut failures = Vec::new();
    let mut time_per_kind = [Duration::ZERO; 4];
    for input in &inputs {
        let panics_before = panics_so_far();
        let input_started = Instant::now();
        let result = harness.try_input(input);
        time_per_kind[Kind::ALL.iter().position(|k| *k == input.kind).unwrap()] +=
            input_started.elapsed();
        let panicked = PANICS.lock().unwrap_or_else(|e| e.into_inner())[panics_before..].join("; ");
        let problem = match (result, panicked.is_empty()) {
            (Ok(outcome), true) => {
                outcomes.push((input.kind, outcome));
                continue;
            }
            // Caught somewhere inside (a tokio task, a compile thread).
            (Ok(_), false) => format!("panicked: {panicked}"),
            (Err(problem), true) => problem,
            (Err(problem), false) => format!("{problem}: {panicked}"),
        };
        // Keep the input for a reproduction outside the test.
        let kept = std::env::temp_dir().join(format!(
            "wisp-hostile-{}-{:04}.wasm",
            input.kind.name(),
            input.index
        ));
        let _ = std::fs::write(&kept, &input.bytes);
        failures.push(format!(
            "{} #{} of seed {seed:#x} ({}; kept at {}): {problem}",
            input.kind.name(),
            input.index,
            input.origin,
            kept.display()
        ));
    }

    let tally = |kind: Option<Kind>, wanted: &dyn Fn(Outcome) -> bool| {
        outcomes
            .iter()
            .filter(|(k, o)| kind.is_none_or(|kind| kind == *k) && wanted(*o))
            .count()
    };
    let refused = |o: Outcome| matches!(o, Outcome::Refused(_));
    for (kind, took) in Kind::ALL.into_iter().zip(time_per_kind) {
        let of = |o: Outcome| tally(Some(kind), &|out| out == o);
        println!(
            "  {:<8} {:>4} inputs ({:>2} as a dependency) in {took:>6.1?}: {} refused, {} answered, {} trapped, {} hit the deadline, {} instantiated, {} failed to instantiate",
            kind.name(),
            inputs.iter().filter(|i| i.kind == kind).count(),
            inputs
                .iter()
                .filter(|i| i.kind == kind && i.role == Role::Dependency)
                .count(),
            tally(Some(kind), &refused),
            of(Outcome::Answered),
            of(Outcome::Trapped),
            of(Outcome::Deadline),
            of(Outcome::Instantiated),
            of(Outcome::InstantiateFailed),
        );
    }
    let stages: Vec<String> = Stage::ALL
        .into_iter()
        .map(|stage| {
            let n = tally(None, &|o| o == Outcome::Refused(stage));
            format!("{n} {}", stage.name())
        })
        .collect();
    println!("  refusals by stage: {}", stages.join(", "));

    let of = |o: Outcome| tally(None, &|out| out == o);
    let kinds = |k: Kind| inputs.iter().filter(|i| i.kind == k).count();
    let panics = PANICS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let no_http = of(Outcome::Instantiated) + of(Outcome::InstantiateFailed);
    println!(
        "hostile components: {} inputs ({} wasm-smith, {} wasm-mutate, {} truncations, {} bit flips): {} refused, {} loaded and ran ({} answered, {} trapped, {} hit the deadline, {no_http} without an HTTP export instantiated of which {} trapped); {} panics, {} other failures; {:.1?}",
        thousands(inputs.len()),
        kinds(Kind::Smith),
        kinds(Kind::Mutate),
        kinds(Kind::Truncate),
        kinds(Kind::Flip),
        thousands(tally(None, &refused)),
        thousands(tally(None, &|o| !refused(o))),
        of(Outcome::Answered),
        of(Outcome::Trapped),
        of(Outcome::Deadline),
        of(Outcome::InstantiateFailed),
        panics.len(),
        failures.len(),
        started.elapsed(),
    );
    assert!(
        panics.is_empty() && failures.is_empty(),
        "{} panics:\n{}\n{} failures:\n{}",
        panics.len(),
        panics.join("\n"),
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(outcomes.len(), inputs.len());
    // A corpus that is all refusals (or all loads) would test little: both paths must be
    // taken, and loaded components must both serve requests and run start functions.
    assert!(tally(None, &refused) > 0);
    assert!(of(Outcome::Answered) > 0 && of(Outcome::Instantiated) > 0);
}
