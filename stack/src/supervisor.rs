//! Keeps the stack's processes running: each one is started by a thread of its own that restarts
//! it when it exits, and, for the broker, when it stops answering Kafka metadata requests for a
//! bounded time (a hung broker accepts TCP but serves no one). Restarts back off from 1 s to
//! 30 s while a process keeps failing, and every restart is logged with its reason, so a crash is
//! visible but never leaves the stack dead. The services reconnect by themselves.
//!
//! Stopping is ordered: [`Supervisor::stop`] first forbids restarts, then stops the processes in
//! reverse start order (SIGTERM, a grace period, then SIGKILL).
//!
//! Spawning with the prefixed output and stopping are `testkit::process`'s; what is the
//! supervisor's own is the restart policy and what it tells the user.

use std::net::SocketAddr;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use testkit::process::{Output, Process, Stopped, STOP_GRACE};

/// How a running process is judged alive, beyond "it has not exited".
#[derive(Clone, Copy, Debug)]
pub enum Liveness {
    /// Alive while the process runs.
    Process,
    /// Alive while it answers a Kafka metadata request on `addr`; restarted when it has not for
    /// `unresponsive`.
    KafkaMetadata {
        addr: SocketAddr,
        unresponsive: Duration,
    },
}

/// Builds the command for each (re)start.
pub type CommandFactory = Box<dyn Fn() -> Command + Send>;

/// Runs after each start, before the process counts as started (e.g. preparing a database).
pub type AfterStart = Box<dyn Fn() -> anyhow::Result<()> + Send>;

struct Entry {
    name: String,
    child: Arc<Mutex<Option<Process>>>,
    watcher: Option<JoinHandle<()>>,
}

/// The supervised processes of one `stack up`.
#[derive(Default)]
pub struct Supervisor {
    stopping: Arc<AtomicBool>,
    entries: Vec<Entry>,
}

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A process that ran this long is healthy again: its next failure restarts it at once.
const STABLE_AFTER: Duration = Duration::from_secs(60);
const CHECK_EVERY: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl Supervisor {
    /// Starts `name` now and keeps it running until [`Supervisor::stop`]. The name prefixes
    /// its output and every message about it.
    pub fn start(
        &mut self,
        name: impl Into<String>,
        command: CommandFactory,
        liveness: Liveness,
        after_start: Option<AfterStart>,
    ) -> anyhow::Result<()> {
        let name = name.into();
        let child = spawn_prefixed(&name, command())?;
        if let Some(after) = &after_start {
            after().with_context(|| format!("preparing {name}"))?;
        }
        let child = Arc::new(Mutex::new(Some(child)));
        let watcher = {
            let child = Arc::clone(&child);
            let stopping = Arc::clone(&self.stopping);
            let name = name.clone();
            std::thread::spawn(move || {
                watch(
                    &name,
                    &child,
                    &stopping,
                    &command,
                    liveness,
                    after_start.as_ref(),
                )
            })
        };
        self.entries.push(Entry {
            name,
            child,
            watcher: Some(watcher),
        });
        Ok(())
    }

    /// Forbids restarts, then stops every process in reverse start order.
    pub fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        for entry in self.entries.iter_mut().rev() {
            let child = lock(&entry.child).take();
            if let Some(mut child) = child {
                stop_process(&entry.name, &mut child);
            }
            if let Some(watcher) = entry.watcher.take() {
                let _ = watcher.join();
            }
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock(child: &Mutex<Option<Process>>) -> std::sync::MutexGuard<'_, Option<Process>> {
    child
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why a running process is restarted.
enum Failure {
    Exited(ExitStatus),
    Unresponsive(Duration),
}

fn watch(
    name: &str,
    child: &Mutex<Option<Process>>,
    stopping: &AtomicBool,
    command: &CommandFactory,
    liveness: Liveness,
    after_start: Option<&AfterStart>,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut started = Instant::now();
    let mut last_answer = Instant::now();
    loop {
        std::thread::sleep(CHECK_EVERY);
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let exited = match lock(child).as_mut() {
            None => return, // taken by stop()
            Some(running) => running.exited(),
        };
        let failure = match (exited, liveness) {
            (Some(status), _) => Failure::Exited(status),
            (None, Liveness::Process) => continue,
            (None, Liveness::KafkaMetadata { addr, unresponsive }) => {
                if testkit::probe::metadata(addr, PROBE_TIMEOUT).is_ok() {
                    last_answer = Instant::now();
                    continue;
                }
                let silent = last_answer.elapsed();
                if silent < unresponsive {
                    continue;
                }
                Failure::Unresponsive(silent)
            }
        };
        if started.elapsed() >= STABLE_AFTER {
            backoff = FIRST_BACKOFF;
        }
        match &failure {
            Failure::Exited(status) => eprintln!(
                "stack: {name} exited unexpectedly ({status}); restarting it in {}s",
                backoff.as_secs()
            ),
            Failure::Unresponsive(silent) => eprintln!(
                "stack: {name} has not answered a Kafka metadata request for {}s; killing it \
                 and restarting it in {}s",
                silent.as_secs(),
                backoff.as_secs()
            ),
        }
        if let Failure::Unresponsive(_) = failure {
            if let Some(running) = lock(child).as_mut() {
                running.kill();
            }
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
        let mut slot = lock(child);
        if stopping.load(Ordering::SeqCst) || slot.is_none() {
            return;
        }
        match spawn_prefixed(name, command()) {
            Ok(new_child) => {
                *slot = Some(new_child);
                drop(slot);
                if let Some(after) = after_start {
                    if let Err(e) = after() {
                        eprintln!("stack: preparing {name} after its restart failed: {e:#}");
                    }
                }
                started = Instant::now();
                last_answer = Instant::now();
            }
            Err(e) => eprintln!("stack: restarting {name} failed: {e:#}; trying again"),
        }
    }
}

/// Starts a process with its output prefixed by its name.
fn spawn_prefixed(name: &str, command: Command) -> anyhow::Result<Process> {
    let process = Process::spawn(name, command, Output::Prefixed)?;
    eprintln!("stack: {name} started (pid {})", process.pid());
    Ok(process)
}

/// SIGTERM, then up to [`STOP_GRACE`] for a graceful exit, then SIGKILL; says which.
fn stop_process(name: &str, process: &mut Process) {
    match process.stop() {
        Stopped::AlreadyExited(_) => {}
        Stopped::Exited(_) => eprintln!("stack: {name} stopped"),
        Stopped::Killed => eprintln!(
            "stack: {name} did not stop in {}s; killing it",
            STOP_GRACE.as_secs()
        ),
    }
}
