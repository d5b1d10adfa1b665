//! `--profile`: a `perf record` of one process during a phase, summarized as the hottest
//! symbols by self time. A missing profiler must not cost the rest of the run, so a failure
//! becomes the profile's text.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context;

/// A `perf record` in progress.
pub(super) struct Perf {
    name: String,
    child: Child,
    data: PathBuf,
}

/// Samples `pid` with perf (software cpu-clock: this VM has no hardware counters) with call
/// graphs, for `seconds`.
pub(super) fn start(name: &str, pid: u32, seconds: f64, work: &Path) -> anyhow::Result<Perf> {
    let data = work.join(format!("perf-{name}.data"));
    let child = Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-F", "499", "-g", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(&data)
        .args(["--", "sleep", &format!("{seconds:.1}")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(data.with_extension("log")).context("creating perf's log")?)
        .spawn()
        .context("starting perf record")?;
    Ok(Perf {
        name: name.to_string(),
        child,
        data,
    })
}

/// The profile's summary, or why there is none (e.g. `perf` is not installed: Debian's
/// `linux-perf`).
pub(super) fn finish(name: &str, perf: anyhow::Result<Perf>) -> (String, String) {
    summarize(perf).unwrap_or_else(|e| (name.to_string(), format!("(not profiled: {e:#})")))
}

/// Waits for perf and summarizes the profile: the hottest symbols by self time.
fn summarize(perf: anyhow::Result<Perf>) -> anyhow::Result<(String, String)> {
    let mut perf = perf?;
    let _ = perf.child.wait();
    let output = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--sort",
            "dso,symbol",
            "--percent-limit",
            "1.5",
            "-g",
            "none",
            "-i",
        ])
        .arg(&perf.data)
        .output()
        .context("running perf report")?;
    let text = String::from_utf8_lossy(&output.stdout);
    // perf pads its columns to the terminal-less maximum width: keep percent, dso, symbol.
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let end = words.iter().position(|w| *w == "-").unwrap_or(words.len());
            words[..end].join(" ")
        })
        .take(25)
        .collect();
    if lines.is_empty() {
        let stderr = std::fs::read_to_string(perf.data.with_extension("log")).unwrap_or_default();
        return Ok((perf.name, format!("(no samples) {}", stderr.trim())));
    }
    Ok((perf.name, lines.join("\n")))
}
