//! The one way the workspace runs its own binaries as processes: build them with cargo, spawn
//! one with its output where the caller wants it, wait until it is ready (a deadline, and an
//! early failure if it exits), and stop it (SIGTERM, a grace period, then SIGKILL).
//!
//! Why here: the launcher (`stack up` and its supervisor), the benchmark and the tests that
//! start binaries each had their own copy of these steps, with their own poll loop and their
//! own stop. This module needs only the standard library, so the launcher can use it without
//! librdkafka (the `broker` feature); waiting goes through [`crate::wait`].

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The workspace's service binaries, in the order a stack starts them (the broker is the
/// embedded one, [`crate::embedded`]).
pub const SERVICES: [&str; 3] = ["schema-registry", "cart-service", "order-service"];

/// How long a stopped process gets to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(15);

/// A `cargo` command run from the workspace root (`$CARGO` when cargo runs us).
pub fn cargo() -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut command = Command::new(cargo);
    command.current_dir(crate::workspace_root());
    command
}

/// `cargo build --release -p …` of `packages`, from the workspace root.
pub fn build_release(packages: &[&str]) -> anyhow::Result<()> {
    let mut build = cargo();
    build.args(["build", "--release"]);
    for package in packages {
        build.args(["-p", package]);
    }
    let status = build.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release failed ({status})");
    }
    Ok(())
}

/// Where a process's stdout and stderr go. Never a pipe nobody reads: a full pipe would stop
/// the process.
#[derive(Clone, Debug)]
pub enum Output {
    /// Both streams into `{dir}/{name}.log`.
    LogFile(PathBuf),
    /// Each line on our stdout as `{name:>15} | {line}` (the launcher's view of its stack).
    Prefixed,
    /// Each line kept for [`Process::output`]; with `echo`, also written to our stderr as
    /// `[{name}] {line}` (so a failing test shows it).
    Captured { echo: bool },
}

/// How [`Process::stop`] ended a process.
#[derive(Debug)]
pub enum Stopped {
    /// It had exited before it was asked to.
    AlreadyExited(ExitStatus),
    /// It exited within the grace period.
    Exited(ExitStatus),
    /// It did not, and was killed.
    Killed,
}

/// A running child process with a name; stopped (SIGTERM, grace, SIGKILL) when dropped.
pub struct Process {
    name: String,
    child: Child,
    started: Instant,
    log: Option<PathBuf>,
    lines: Arc<Mutex<Vec<String>>>,
    grace: Duration,
}

impl Process {
    /// Starts `command` (stdin closed) with its output sent to `output`.
    pub fn spawn(name: &str, mut command: Command, output: Output) -> anyhow::Result<Process> {
        command.stdin(Stdio::null());
        let mut log = None;
        match &output {
            Output::LogFile(dir) => {
                let path = dir.join(format!("{name}.log"));
                let file = std::fs::File::create(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                let err = file.try_clone().context("cloning a log file handle")?;
                command.stdout(Stdio::from(file)).stderr(Stdio::from(err));
                log = Some(path);
            }
            Output::Prefixed | Output::Captured { .. } => {
                command.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
        }
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", command.get_program()))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in output_streams(&mut child) {
            let (name, output, lines) = (name.to_string(), output.clone(), Arc::clone(&lines));
            std::thread::spawn(move || forward(&name, stream, &output, &lines));
        }
        Ok(Process {
            name: name.to_string(),
            child,
            started,
            log,
            lines,
            grace: STOP_GRACE,
        })
    }

    /// How long [`Process::stop`] and dropping wait after SIGTERM (default [`STOP_GRACE`]).
    pub fn with_stop_grace(mut self, grace: Duration) -> Process {
        self.grace = grace;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When it was spawned.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The lines it printed so far ([`Output::Captured`]; empty otherwise).
    pub fn output(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `limit` for it to exit by itself.
    pub fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut status = None;
        let _ = crate::wait::until("exit", limit, || {
            status = self.exited();
            status.is_some()
        });
        status
    }

    /// Polls `condition` every `poll` until it holds (returns the time since spawn); fails
    /// after `limit`, or as soon as the process exits, naming where its output went.
    pub fn wait_until(
        &mut self,
        what: &str,
        limit: Duration,
        poll: Duration,
        mut condition: impl FnMut() -> bool,
    ) -> anyhow::Result<Duration> {
        let mut exited = None;
        let waited = crate::wait::until_every(what, limit, poll, || {
            if condition() {
                return true;
            }
            exited = self.child.try_wait().ok().flatten();
            exited.is_some()
        });
        let whose = match &self.log {
            Some(log) => format!("see {}", log.display()),
            None => format!("{}'s output is above", self.name),
        };
        if let Some(status) = exited {
            bail!("{} exited ({status}) before {what}; {whose}", self.name);
        }
        waited.map_err(|e| anyhow::anyhow!("{}: {e:#}; {whose}", self.name))?;
        Ok(self.started.elapsed())
    }

    /// Waits until it printed a line containing `needle` ([`Output::Captured`]).
    pub fn wait_for_line(
        &mut self,
        needle: &str,
        limit: Duration,
        poll: Duration,
    ) -> anyhow::Result<Duration> {
        self.wait_for_output(&format!("saying {needle:?}"), limit, poll, |lines| {
            lines.iter().any(|line| line.contains(needle))
        })
    }

    /// Waits until `found` holds for the lines printed so far ([`Output::Captured`]).
    pub fn wait_for_output(
        &mut self,
        what: &str,
        limit: Duration,
        poll: Duration,
        mut found: impl FnMut(&[String]) -> bool,
    ) -> anyhow::Result<Duration> {
        let lines = Arc::clone(&self.lines);
        self.wait_until(what, limit, poll, || {
            found(&lines.lock().unwrap_or_else(PoisonError::into_inner))
        })
    }

    /// Waits until `GET /ready` on `port` answers 200.
    pub fn wait_ready(
        &mut self,
        port: u16,
        limit: Duration,
        poll: Duration,
    ) -> anyhow::Result<Duration> {
        self.wait_until("ready", limit, poll, || {
            http_status(port, "/ready") == Some(200)
        })
    }

    /// Waits until `port` accepts TCP connections (for a process without `/ready`).
    pub fn wait_listening(
        &mut self,
        port: u16,
        limit: Duration,
        poll: Duration,
    ) -> anyhow::Result<Duration> {
        self.wait_until("listening", limit, poll, || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
    }

    /// Sends `signal` (a name such as `INT`, `KILL`, `STOP`).
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        send_signal(self.pid(), signal)
    }

    /// SIGTERM, up to the grace period for it to exit, then SIGKILL.
    pub fn stop(&mut self) -> Stopped {
        self.stop_with("TERM")
    }

    /// As [`Process::stop`] with another first signal (e.g. `INT`, a user's Ctrl-C).
    pub fn stop_with(&mut self, signal: &str) -> Stopped {
        if let Some(status) = self.exited() {
            return Stopped::AlreadyExited(status);
        }
        let _ = self.signal(signal);
        let mut status = None;
        let _ = crate::wait::until("exit", self.grace, || {
            status = self.exited();
            status.is_some()
        });
        match status {
            Some(status) => Stopped::Exited(status),
            None => {
                self.kill();
                Stopped::Killed
            }
        }
    }

    /// SIGKILL at once, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends `signal` (a name such as `TERM`, `KILL`, `STOP`, `CONT`) to `pid`.
pub fn send_signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill -{signal} {pid} failed ({status})");
    }
    Ok(())
}

/// A minimal HTTP/1.1 GET on 127.0.0.1 returning the status code, or `None` if nothing
/// answered within 2 s; no HTTP client needed.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    // One write: `write!` on a socket sends each formatted piece in its own packet.
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// A child's stdout and stderr (those that were piped), to be read on threads of their own.
pub fn output_streams(child: &mut Child) -> Vec<Box<dyn Read + Send>> {
    [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Copies a child's stream line by line to where `output` says.
fn forward(name: &str, stream: Box<dyn Read + Send>, output: &Output, lines: &Mutex<Vec<String>>) {
    let width = 15;
    for line in BufReader::new(stream).lines().map_while(Result::ok) {
        match output {
            Output::Prefixed => println!("{name:>width$} | {line}"),
            Output::Captured { echo } => {
                if *echo {
                    eprintln!("[{name}] {line}");
                }
                lines
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
            }
            Output::LogFile(_) => {}
        }
    }
}

/// Fails naming the first of `names` that is not a file in `dir`.
pub fn require_binaries(dir: &Path, names: &[&str]) -> anyhow::Result<()> {
    for name in names {
        let path = dir.join(name);
        if !path.is_file() {
            bail!("{} is missing; build it first", path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn captured_output_is_kept_line_by_line() {
        let mut p = Process::spawn(
            "echo",
            shell("echo one; echo two >&2"),
            Output::Captured { echo: false },
        )
        .expect("spawns");
        let status = p.exit_within(Duration::from_secs(10)).expect("exits");
        assert!(status.success());
        crate::wait::until("both lines", Duration::from_secs(5), || {
            p.output().len() == 2
        })
        .expect("both streams read");
        let mut lines = p.output();
        lines.sort();
        assert_eq!(lines, ["one", "two"]);
    }

    #[test]
    fn a_log_file_gets_both_streams() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut p = Process::spawn(
            "logged",
            shell("echo out; echo err >&2"),
            Output::LogFile(dir.path().to_path_buf()),
        )
        .expect("spawns");
        p.exit_within(Duration::from_secs(10)).expect("exits");
        let log = std::fs::read_to_string(dir.path().join("logged.log")).expect("the log");
        assert!(log.contains("out") && log.contains("err"), "{log}");
    }

    #[test]
    fn waiting_fails_early_when_the_process_exits() {
        let mut p = Process::spawn("quitter", shell("exit 3"), Output::Captured { echo: false })
            .expect("spawns");
        let started = Instant::now();
        let error = p
            .wait_until(
                "ready",
                Duration::from_secs(60),
                Duration::from_millis(5),
                || false,
            )
            .expect_err("it exited");
        assert!(started.elapsed() < Duration::from_secs(30), "no early exit");
        let text = format!("{error:#}");
        assert!(
            text.contains("quitter exited") && text.contains("before ready"),
            "{text}"
        );
    }

    #[test]
    fn waiting_times_out_naming_the_process_and_the_condition() {
        let mut p = Process::spawn(
            "sleeper",
            shell("sleep 30"),
            Output::Captured { echo: false },
        )
        .expect("spawns")
        .with_stop_grace(Duration::from_secs(5));
        let error = p
            .wait_until(
                "ready",
                Duration::from_millis(100),
                Duration::from_millis(5),
                || false,
            )
            .expect_err("never ready");
        let text = format!("{error:#}");
        assert!(text.contains("sleeper") && text.contains("ready"), "{text}");
        assert!(
            matches!(p.stop(), Stopped::Exited(_)),
            "sh exits on SIGTERM"
        );
        assert!(matches!(p.stop(), Stopped::AlreadyExited(_)));
    }

    #[test]
    fn a_process_ignoring_sigterm_is_killed_after_the_grace() {
        let mut p = Process::spawn(
            "stubborn",
            shell("trap '' TERM; echo trapped; while true; do sleep 0.1; done"),
            Output::Captured { echo: false },
        )
        .expect("spawns")
        .with_stop_grace(Duration::from_millis(300));
        p.wait_for_line("trapped", Duration::from_secs(10), Duration::from_millis(5))
            .expect("the trap is set");
        assert!(matches!(p.stop(), Stopped::Killed));
        assert!(p.exited().is_some(), "reaped");
    }

    #[test]
    fn http_status_reads_the_status_line() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let port = listener.local_addr().expect("an address").port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("a connection");
            // Up to the end of the head, however many reads it takes.
            let mut request = Vec::new();
            let mut buffer = [0_u8; 256];
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buffer).expect("the request");
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..n]);
            }
            let request = String::from_utf8_lossy(&request).to_string();
            stream
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
                .expect("answers");
            request
        });
        assert_eq!(http_status(port, "/ready"), Some(503));
        let request = server.join().expect("the server thread");
        assert!(request.starts_with("GET /ready HTTP/1.1\r\n"), "{request}");
    }
}
