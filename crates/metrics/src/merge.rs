//! One exposition for two processes: a node serves its worker process's metrics beside
//! its own, each of the worker's samples labelled `process="worker"`, so that a scrape of
//! the node sees every request of an app wherever it ran (`sum by (app)` adds them up).

/// A metric family in the text format: its `# HELP`/`# TYPE`/`# UNIT` lines and samples.
struct Family<'a> {
    name: &'a str,
    header: Vec<&'a str>,
    samples: Vec<&'a str>,
}

/// `own`'s families with `other`'s samples added to each, every one of them labelled
/// `process="<process>"`; families only `other` has come after. Both are OpenMetrics text
/// as [`crate::Metrics::encode`] writes it.
pub fn with_other_process(own: &str, other: &str, process: &str) -> String {
    let own = families(own);
    let mut other = families(other);
    let label = format!("process=\"{}\"", escape(process));
    let mut out = String::with_capacity(own.iter().chain(&other).map(size).sum::<usize>() + 64);
    let add_samples = |out: &mut String, family: &Family<'_>| {
        for sample in &family.samples {
            out.push_str(&labelled(sample, &label));
            out.push('\n');
        }
    };
    for family in &own {
        push_lines(&mut out, &family.header);
        push_lines(&mut out, &family.samples);
        if let Some(at) = other.iter().position(|f| f.name == family.name) {
            add_samples(&mut out, &other.remove(at));
        }
    }
    for family in &other {
        push_lines(&mut out, &family.header);
        add_samples(&mut out, family);
    }
    out.push_str("# EOF\n");
    out
}

fn size(family: &Family<'_>) -> usize {
    family
        .header
        .iter()
        .chain(&family.samples)
        .map(|l| l.len() + 1)
        .sum()
}

fn push_lines(out: &mut String, lines: &[&str]) {
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
}

/// Splits an exposition into its families; a family starts at a metadata line naming
/// another family than the one before. `# EOF` and blank lines are dropped.
fn families(text: &str) -> Vec<Family<'_>> {
    let mut families: Vec<Family<'_>> = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line == "# EOF" {
            continue;
        }
        if let Some(meta) = line.strip_prefix("# ") {
            let name = meta.split(' ').nth(1).unwrap_or("");
            match families.last_mut() {
                Some(family) if family.name == name && family.samples.is_empty() => {
                    family.header.push(line);
                }
                _ => families.push(Family {
                    name,
                    header: vec![line],
                    samples: Vec::new(),
                }),
            }
            continue;
        }
        match families.last_mut() {
            Some(family) => family.samples.push(line),
            // A sample before any metadata: a family of its own, without a header.
            None => families.push(Family {
                name: "",
                header: Vec::new(),
                samples: vec![line],
            }),
        }
    }
    families
}

/// `sample` (`name{labels} value ...` or `name value ...`) with `label` added to its
/// label set.
fn labelled(sample: &str, label: &str) -> String {
    let name_end = sample.find(['{', ' ']).unwrap_or(sample.len());
    let (name, rest) = sample.split_at(name_end);
    match rest.strip_prefix('{') {
        Some(labels) => {
            let close = closing_brace(labels).unwrap_or(labels.len());
            let (inside, after) = labels.split_at(close);
            let separator = if inside.trim().is_empty() { "" } else { "," };
            format!("{name}{{{inside}{separator}{label}{after}")
        }
        None => format!("{name}{{{label}}}{rest}"),
    }
}

/// Where the label set that `labels` starts ends: the first `}` outside a quoted value.
fn closing_brace(labels: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (at, c) in labels.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(at),
            _ => {}
        }
    }
    None
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &str = "# HELP wisp_requests Requests.\n# TYPE wisp_requests counter\n\
        wisp_requests_total{app=\"a\",component=\"c\"} 5\n\
        # HELP process_threads Threads.\n# TYPE process_threads gauge\nprocess_threads 9\n# EOF\n";
    const WORKER: &str = "# HELP wisp_requests Requests.\n# TYPE wisp_requests counter\n\
        wisp_requests_total{app=\"b}\\\"x\",component=\"c\"} 7\n\
        # HELP process_threads Threads.\n# TYPE process_threads gauge\nprocess_threads 4\n\
        # HELP wisp_compile_cache_misses Compiles.\n# TYPE wisp_compile_cache_misses counter\n\
        wisp_compile_cache_misses_total 1\n# EOF\n";

    #[test]
    fn the_other_processes_samples_join_their_families_with_a_label() {
        let merged = with_other_process(NODE, WORKER, "worker");
        assert_eq!(
            merged,
            "# HELP wisp_requests Requests.\n# TYPE wisp_requests counter\n\
             wisp_requests_total{app=\"a\",component=\"c\"} 5\n\
             wisp_requests_total{app=\"b}\\\"x\",component=\"c\",process=\"worker\"} 7\n\
             # HELP process_threads Threads.\n# TYPE process_threads gauge\nprocess_threads 9\n\
             process_threads{process=\"worker\"} 4\n\
             # HELP wisp_compile_cache_misses Compiles.\n# TYPE wisp_compile_cache_misses counter\n\
             wisp_compile_cache_misses_total{process=\"worker\"} 1\n# EOF\n"
        );
    }

    #[test]
    fn nothing_from_the_other_process_leaves_the_exposition_as_it_was() {
        assert_eq!(with_other_process(NODE, "", "worker"), NODE);
        assert_eq!(
            labelled("x{} 1 1700000000", "process=\"w\""),
            "x{process=\"w\"} 1 1700000000"
        );
    }
}
