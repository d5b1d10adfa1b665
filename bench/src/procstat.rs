//! CPU and resident memory of a process, read from `/proc/<pid>/stat` and `/proc/<pid>/status`.
//!
//! Why: the benchmark runs the real release binaries as processes, so what each service costs
//! is measured by the kernel's own accounting, not estimated. CPU is user + system time
//! (including all threads) over wall time, in "cores" (1.0 = one core busy); RSS is `VmRSS`.
//! A [`Sampler`] thread polls every 100 ms to catch the peak RSS of a phase.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;

/// One reading.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// user + system CPU time so far.
    pub cpu: Duration,
    /// Resident set size, bytes.
    pub rss: u64,
    pub at: Instant,
}

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`, 100 on Linux everywhere).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// Reads a process's CPU time and RSS now.
pub fn read(pid: u32) -> anyhow::Result<Reading> {
    let at = Instant::now();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of stat(5), so utime (14) and stime (15) are at 11 and 12.
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .context("short /proc/<pid>/stat")?
            .parse::<u64>()
            .context("parsing /proc/<pid>/stat")
    };
    let total_ticks = ticks(11)? + ticks(12)?;
    let cpu = Duration::from_secs_f64(total_ticks as f64 / clock_ticks() as f64);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(Reading {
        cpu,
        rss: rss_kb * 1024,
        at,
    })
}

/// What a process used between two moments.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Average CPU in cores (1.0 = one core fully busy).
    pub cpu_cores: f64,
    /// RSS at the end, bytes.
    pub rss_end: u64,
    /// The largest RSS seen, bytes.
    pub rss_peak: u64,
    pub wall: Duration,
    /// CPU time used.
    pub cpu_time: Duration,
}

/// Polls a set of processes in a background thread; [`Sampler::finish`] returns each one's
/// [`Usage`] over the sampler's lifetime.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<Option<Usage>>>>,
}

impl Sampler {
    /// Starts sampling `pids` every 100 ms.
    pub fn start(pids: &[u32]) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let pids = pids.to_vec();
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let first: Vec<Option<Reading>> = pids.iter().map(|p| read(*p).ok()).collect();
            let peaks = Mutex::new(vec![0_u64; pids.len()]);
            let sample = |peaks: &Mutex<Vec<u64>>| -> Vec<Option<Reading>> {
                let readings: Vec<Option<Reading>> = pids.iter().map(|p| read(*p).ok()).collect();
                let mut peaks = peaks.lock().unwrap_or_else(PoisonError::into_inner);
                for (peak, r) in peaks.iter_mut().zip(&readings) {
                    if let Some(r) = r {
                        *peak = (*peak).max(r.rss);
                    }
                }
                readings
            };
            sample(&peaks);
            while !flag.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(100));
                sample(&peaks);
            }
            let last = sample(&peaks);
            let peaks = peaks.into_inner().unwrap_or_else(PoisonError::into_inner);
            first
                .iter()
                .zip(&last)
                .zip(peaks)
                .map(|((a, b), peak)| match (a, b) {
                    (Some(a), Some(b)) => {
                        let wall = b.at.saturating_duration_since(a.at);
                        let cpu_time = b.cpu.saturating_sub(a.cpu);
                        Some(Usage {
                            cpu_cores: cpu_time.as_secs_f64() / wall.as_secs_f64().max(1e-9),
                            rss_end: b.rss,
                            rss_peak: peak.max(b.rss),
                            wall,
                            cpu_time,
                        })
                    }
                    _ => None,
                })
                .collect()
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling; one entry per pid (None if it could not be read).
    pub fn finish(mut self) -> Vec<Option<Usage>> {
        self.stop.store(true, Ordering::Release);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// This machine: CPU model, logical cores, total memory, kernel, load average.
pub fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    serde_json::json!({
        "cpu": model,
        "cores": cores,
        "memoryGiB": mem_kb as f64 / 1024.0 / 1024.0,
        "kernel": kernel,
        "loadAverage": load_average(),
    })
}

/// `/proc/loadavg`'s first three fields.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU busy fraction of the whole machine (all cores) over `window`, from `/proc/stat`.
pub fn machine_busy(window: Duration) -> f64 {
    fn totals() -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().next()?;
        let values: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
        Some((values.iter().sum(), idle))
    }
    let Some((t0, i0)) = totals() else { return 0.0 };
    std::thread::sleep(window);
    let Some((t1, i1)) = totals() else { return 0.0 };
    let total = t1.saturating_sub(t0).max(1);
    1.0 - i1.saturating_sub(i0) as f64 / total as f64
}
