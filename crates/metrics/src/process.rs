//! The standard `process_*` metrics, read from `/proc/self` at each scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

#[derive(Debug)]
pub(crate) struct ProcessCollector;

/// What `/proc/self/stat` says, in base units.
struct Stat {
    cpu_seconds: f64,
    threads: i64,
    start_time_seconds: f64,
    virtual_bytes: i64,
    resident_bytes: i64,
}

fn read_stat() -> Option<Stat> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after its last `)`.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    // Field n of proc(5) is fields[n - 3].
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime ")?.trim().parse::<u64>().ok())?;
    Some(Stat {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        threads: field(20)? as i64,
        start_time_seconds: boot_time as f64 + field(22)? as f64 / ticks,
        virtual_bytes: field(23)? as i64,
        resident_bytes: (field(24)? * rustix::param::page_size() as u64) as i64,
    })
}

fn open_fds() -> Option<i64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as i64)
}

fn max_fds() -> Option<i64> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    limit.current.map(|n| n.min(i64::MAX as u64) as i64)
}

/// Writes one metric with its descriptor.
fn write(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    metric: impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, unit.as_ref(), metric.metric_type())?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        if let Some(stat) = read_stat() {
            let resident = ConstGauge::new(stat.resident_bytes);
            write(
                e,
                "process_resident_memory",
                "Resident memory size",
                Some(Unit::Bytes),
                resident,
            )?;
            let virt = ConstGauge::new(stat.virtual_bytes);
            write(
                e,
                "process_virtual_memory",
                "Virtual memory size",
                Some(Unit::Bytes),
                virt,
            )?;
            write(
                e,
                "process_threads",
                "OS threads",
                None,
                ConstGauge::new(stat.threads),
            )?;
            let start = ConstGauge::new(stat.start_time_seconds);
            let help = "Start time of the process since the Unix epoch";
            write(e, "process_start_time", help, Some(Unit::Seconds), start)?;
            let cpu = ConstCounter::new(stat.cpu_seconds);
            let help = "User and system CPU time spent";
            write(e, "process_cpu", help, Some(Unit::Seconds), cpu)?;
        }
        if let Some(fds) = open_fds() {
            write(
                e,
                "process_open_fds",
                "Open file descriptors",
                None,
                ConstGauge::new(fds),
            )?;
        }
        if let Some(max) = max_fds() {
            let help = "Most file descriptors the process may open";
            write(e, "process_max_fds", help, None, ConstGauge::new(max))?;
        }
        Ok(())
    }
}
