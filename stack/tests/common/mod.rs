//! The stack as a user launches it: the real `stack up` launcher starting the real broker (Nisshi),
//! schema registry, CartService and OrderService as processes, on free ports and a data folder
//! of the test's own. The launcher runs the debug binaries `cargo test --workspace` has built
//! (`--bin-dir`), so these tests do not trigger a release build.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use testkit::process::{Output, Process, Stopped};

/// The ports of one launched stack.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub broker: u16,
    pub registry: u16,
    pub cart: u16,
    pub order: u16,
}

impl Ports {
    pub fn free() -> Self {
        // Four distinct ports that were free a moment ago; for the cart, one whose second
        // instance's port (`--cart-instances 2`) was free as well.
        let mut ports = Vec::new();
        while ports.len() < 4 {
            let port = testkit::free_port().unwrap();
            let taken = |p: u16| ports.contains(&p);
            if taken(port) {
                continue;
            }
            if ports.len() == 2 {
                let second = Self::cart_port_of(port, 1);
                if second.is_none_or(|p| taken(p) || !port_is_free(p)) {
                    continue;
                }
            }
            if ports.len() == 3 && Self::cart_port_of(ports[2], 1) == Some(port) {
                continue;
            }
            ports.push(port);
        }
        Ports {
            broker: ports[0],
            registry: ports[1],
            cart: ports[2],
            order: ports[3],
        }
    }

    pub fn cart_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.cart)
    }

    /// The port of CartService instance `instance` (0-based) as `stack up --cart-instances`
    /// assigns it: `--cart-port` for the first, `--cart-port + 9 + i` after it.
    fn cart_port_of(cart: u16, instance: u16) -> Option<u16> {
        match instance {
            0 => Some(cart),
            i => cart.checked_add(9)?.checked_add(i),
        }
    }

    /// The port of CartService instance `instance` of this stack.
    pub fn cart_instance(&self, instance: u16) -> u16 {
        Self::cart_port_of(self.cart, instance).unwrap()
    }

    pub fn cart_instance_url(&self, instance: u16) -> String {
        format!("http://127.0.0.1:{}", self.cart_instance(instance))
    }

    pub fn order_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.order)
    }

    pub fn registry_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.registry)
    }
}

/// A running `stack up`; dropping it stops the stack the way a user does, with Ctrl-C.
pub struct Launched {
    process: Process,
    pub ports: Ports,
}

/// The directory of the workspace's debug binaries (where this test's launcher lives).
pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_stack"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The launcher command for `ports` and `data_dir`, not yet started.
pub fn launcher(ports: Ports, data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stack"));
    command
        .arg("up")
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--broker-port", &ports.broker.to_string()])
        .args(["--registry-port", &ports.registry.to_string()])
        .args(["--cart-port", &ports.cart.to_string()])
        .args(["--order-port", &ports.order.to_string()])
        .env_remove("RUST_LOG");
    command
}

impl Launched {
    /// Launches the stack and waits until the launcher says it is up (every service ready).
    pub fn up(data_dir: &Path) -> Self {
        Self::up_on(Ports::free(), data_dir)
    }

    pub fn up_on(ports: Ports, data_dir: &Path) -> Self {
        Self::up_with(ports, data_dir, &[])
    }

    /// As [`Launched::up_on`], with extra environment variables for the launcher.
    pub fn up_with(ports: Ports, data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut command = launcher(ports, data_dir);
        for (name, value) in env {
            command.env(name, value);
        }
        // Its output echoed as `[stack] …`, so a failing test shows it.
        let process = Process::spawn("stack", command, Output::Captured { echo: true })
            .expect("starting the stack launcher")
            .with_stop_grace(Duration::from_secs(60));
        let mut launched = Launched { process, ports };
        if let Err(e) = launched.process.wait_for_line(
            "The stack is up",
            Duration::from_secs(180),
            Duration::from_millis(100),
        ) {
            panic!("the stack was not up: {e:#}");
        }
        launched
    }

    pub fn output(&self) -> Vec<String> {
        self.process.output()
    }

    pub fn output_contains(&self, needle: &str) -> bool {
        self.output().iter().any(|l| l.contains(needle))
    }

    /// The process ID of `name` (broker, schema-registry, cart-service, order-service) as the
    /// launcher last reported starting it.
    pub fn pid_of(&self, name: &str) -> Option<u32> {
        let prefix = format!("stack: {name} started (pid ");
        self.output()
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix(&prefix)?.strip_suffix(')')?.parse().ok())
    }

    /// How many times the launcher reported starting `name`.
    pub fn starts_of(&self, name: &str) -> usize {
        let prefix = format!("stack: {name} started (pid ");
        self.output()
            .iter()
            .filter(|l| l.starts_with(&prefix))
            .count()
    }

    /// Ctrl-C (SIGINT) to the launcher, then waits for it to exit.
    pub fn stop(mut self) -> ExitStatus {
        match self.process.stop_with("INT") {
            Stopped::AlreadyExited(status) | Stopped::Exited(status) => status,
            Stopped::Killed => panic!("the launcher did not exit within 60 s of Ctrl-C"),
        }
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        self.process.stop_with("INT");
    }
}

/// What a child process printed, and how it ended (`None`: killed at the deadline).
pub struct Finished {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` with piped output, killing it if it is still running after `deadline`; both
/// streams are read on threads of their own so a chatty child never blocks on a full pipe.
pub fn run_bounded(command: &mut Command, deadline: Duration) -> Finished {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {:?}: {e}", command.get_program()));
    let readers: Vec<_> = testkit::process::output_streams(&mut child)
        .into_iter()
        .map(|mut stream| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = stream.read_to_string(&mut text);
                text
            })
        })
        .collect();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut output = readers.into_iter().map(|r| r.join().unwrap());
    Finished {
        status,
        stdout: output.next().unwrap_or_default(),
        stderr: output.next().unwrap_or_default(),
    }
}

/// The answer of one HTTP request made with curl: status and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `curl` with `args`, returning the status and body.
pub fn curl(args: &[&str]) -> Reply {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("running curl");
    assert!(
        output.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    Reply {
        status: status.trim().parse().unwrap(),
        body: body.to_string(),
    }
}

/// True when nothing listens on `port` any more.
pub fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}
