//! The embedded Kafka broker: which one, where its binary is, how to install it and how to start
//! it — one spelling for the launcher, the tests and the benchmark.
//!
//! The default is Nisshi (the crate `nisshi`, Tansu's successor). Tansu 0.6.0 stays selectable
//! only so the benchmark can measure the two side by side (`bench --broker tansu`): it panics on
//! the first produce after a crash (KIP-360 epoch bump), has a `todo!()` where a fenced
//! transactional producer re-initialises, and its `header` table lacks an index (added here,
//! [`Distribution::prepare`]); BENCHMARKS.md and `bench/NOTES.md` tell that history.
//!
//! Both are built from the Rust package registry with `cargo install`. Nisshi's dependencies need a
//! newer rustc than some machines' stable toolchain, so [`Distribution::ensure_installed`] picks an installed toolchain
//! that is new enough (the default one first) and says clearly what to do when none is.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::{workspace_root, TOOLS_DIR};

/// An installable Kafka-compatible broker from the Rust package registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Distribution {
    /// Human name, for messages.
    pub name: &'static str,
    /// Crate and binary name.
    pub crate_name: &'static str,
    /// The version the project is tested with.
    pub version: &'static str,
    /// Cargo features of the SQLite build.
    features: &'static [&'static str],
    /// `--no-default-features` (Nisshi's defaults pull in data-lake integrations we do not run).
    no_default_features: bool,
    /// The oldest rustc that builds this version with `--locked`, as (major, minor).
    min_rustc: (u32, u32),
    /// Environment variable naming a prebuilt binary.
    pub bin_env: &'static str,
}

/// Nisshi 0.8.1: survives kill -9 under idempotent load, fences transactional producers, keys its
/// header table, answers a fetch as soon as data is there, has TLS and SASL listeners.
pub const NISSHI: Distribution = Distribution {
    name: "Nisshi",
    crate_name: "nisshi",
    version: "0.8.1",
    features: &["libsql"],
    no_default_features: true,
    // Its rama 0.4 dependencies declare rust-version 1.96.
    min_rustc: (1, 96),
    bin_env: "NISSHI_BIN",
};

/// Tansu 0.6.0, the former default, kept for side-by-side benchmarks only.
pub const TANSU: Distribution = Distribution {
    name: "Tansu",
    crate_name: "tansu",
    version: "0.6.0",
    features: &["libsql"],
    no_default_features: false,
    min_rustc: (1, 85),
    bin_env: "TANSU_BIN",
};

/// The broker `stack up`, the tests and the benchmark run unless told otherwise.
pub const DEFAULT: Distribution = NISSHI;

/// Environment variables the broker binaries read as flags (clap `env`), removed from the
/// broker's environment so an operator's unrelated `SCHEMA_REGISTRY` or `LISTENER_URL` cannot
/// change how the embedded broker runs.
const BROKER_FLAG_ENV: [&str; 6] = [
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "DATA_LAKE",
];

impl Distribution {
    /// Looks a distribution up by crate name (`nisshi`, `tansu`).
    pub fn named(name: &str) -> anyhow::Result<Distribution> {
        [NISSHI, TANSU]
            .into_iter()
            .find(|d| d.crate_name.eq_ignore_ascii_case(name))
            .with_context(|| format!("unknown broker {name:?}: expected nisshi or tansu"))
    }

    /// Finds the binary: `$<bin_env>`, then `<workspace>/.tools/bin`, then `PATH`, then
    /// `~/.cargo/bin`, then `$BROKER_INSTALL_ROOT/bin`.
    pub fn binary(&self) -> anyhow::Result<PathBuf> {
        if let Some(path) = std::env::var_os(self.bin_env) {
            let path = PathBuf::from(path);
            if path.is_file() {
                return Ok(path);
            }
            bail!("{}={} is not a file", self.bin_env, path.display());
        }
        let name = self.crate_name;
        let mut candidates = vec![workspace_root().join(TOOLS_DIR).join("bin").join(name)];
        if let Some(root) = std::env::var_os("BROKER_INSTALL_ROOT") {
            candidates.push(PathBuf::from(root).join("bin").join(name));
        }
        if let Some(paths) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&paths).map(|dir| dir.join(name)));
        }
        if let Some(home) = std::env::var_os("HOME") {
            candidates.push(PathBuf::from(home).join(".cargo/bin").join(name));
        }
        candidates
            .into_iter()
            .find(|p| p.is_file())
            .with_context(|| {
                format!(
                "no {} broker binary found (looked at ${}, .tools/bin, $BROKER_INSTALL_ROOT/bin, \
                 PATH, ~/.cargo/bin). Run the README's test command (`cargo run -p stack -- \
                 test`) or `cargo run -p stack -- install`, which build it",
                self.name, self.bin_env
            )
            })
    }

    /// The broker listening on 127.0.0.1:`port` with SQLite storage in `data_dir/broker.db`.
    /// Both brokers read the path after `sqlite://` relative to their working directory, so the
    /// command runs inside `data_dir`. Output is the caller's.
    pub fn command(&self, binary: &Path, port: u16, data_dir: &Path) -> Command {
        let listener = format!("tcp://127.0.0.1:{port}");
        let mut command = Command::new(binary);
        for name in BROKER_FLAG_ENV {
            command.env_remove(name);
        }
        command
            .arg("broker")
            .args(["--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            .args(["--storage-engine", "sqlite://broker.db"])
            .current_dir(data_dir);
        if *self == NISSHI {
            // Kafka's `group.initial.rebalance.delay.ms` (3 s by default) holds the first
            // assignment of an empty group: every CartService start would wait for it. A
            // development broker does without, as docker-compose.yml's Kafka does.
            command.args(["--group-initial-rebalance-delay", "0s"]);
        }
        command
    }

    /// What must be done to a started broker's database before use: for Tansu, the header index
    /// its schema lacks ([`TANSU_HEADER_INDEX`]); nothing for Nisshi. Safe on every start.
    pub fn prepare(&self, data_dir: &Path, timeout: Duration) -> anyhow::Result<()> {
        if *self == TANSU {
            add_header_index(&data_dir.join("broker.db"), timeout)
        } else {
            Ok(())
        }
    }

    /// Returns the binary, building it with `cargo install` first if it is missing (into
    /// `$BROKER_INSTALL_ROOT`, default cargo's own root, so every clone on the machine shares one
    /// build). The build uses the default toolchain when it is new enough, else the newest
    /// installed toolchain that is, and fails with what to do when none is.
    pub fn ensure_installed(&self) -> anyhow::Result<PathBuf> {
        if let Ok(path) = self.binary() {
            return Ok(path);
        }
        let toolchain = pick_toolchain(self.min_rustc)
            .with_context(|| format!("building {} {}", self.name, self.version))?;
        eprintln!(
            "stack: {} {} is not installed; building it now with cargo install using {} \
             (once per machine, 12 minutes or more on 2 cores; its progress follows)",
            self.name,
            self.version,
            toolchain.describe()
        );
        let mut install = toolchain.cargo();
        install.args([
            "install",
            self.crate_name,
            "--version",
            self.version,
            "--locked",
        ]);
        if self.no_default_features {
            install.arg("--no-default-features");
        }
        install.args(["--features", &self.features.join(",")]);
        if let Some(root) = std::env::var_os("BROKER_INSTALL_ROOT") {
            install.arg("--root").arg(root);
        }
        let status = install
            .status()
            .with_context(|| format!("running cargo install {}", self.crate_name))?;
        if !status.success() {
            bail!("cargo install {} failed ({status})", self.crate_name);
        }
        self.binary()
    }
}

/// A Rust toolchain to build a broker with.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Toolchain {
    /// Whatever `cargo` resolves to (the default or the directory's override).
    Default { version: String },
    /// A named rustup toolchain, run with `rustup run NAME cargo`.
    Rustup { name: String, version: String },
}

impl Toolchain {
    fn cargo(&self) -> Command {
        match self {
            Toolchain::Default { .. } => {
                let mut cargo = Command::new("cargo");
                // `cargo run -p stack` sets RUSTUP_TOOLCHAIN for its children; let the default
                // resolve as it would in a shell.
                cargo.env_remove("RUSTUP_TOOLCHAIN");
                cargo
            }
            Toolchain::Rustup { name, .. } => {
                let mut rustup = Command::new("rustup");
                rustup.args(["run", name, "cargo"]);
                rustup.env_remove("RUSTUP_TOOLCHAIN");
                rustup
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Toolchain::Default { version } => format!("the default toolchain ({version})"),
            Toolchain::Rustup { name, version } => format!("toolchain {name} ({version})"),
        }
    }
}

/// `rustc 1.97.0-nightly (…)` → (1, 97).
fn parse_rustc_version(text: &str) -> Option<(u32, u32)> {
    let version = text.split_whitespace().nth(1)?;
    let mut parts = version.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn rustc_version(mut command: Command) -> Option<String> {
    let output = command.env_remove("RUSTUP_TOOLCHAIN").output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn pick_toolchain(min: (u32, u32)) -> anyhow::Result<Toolchain> {
    let mut rustc = Command::new("rustc");
    rustc.arg("--version");
    let default = rustc_version(rustc);
    if let Some(version) = &default {
        if parse_rustc_version(version).is_some_and(|v| v >= min) {
            return Ok(Toolchain::Default {
                version: version.clone(),
            });
        }
    }
    let listed = Command::new("rustup")
        .args(["toolchain", "list"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut best: Option<((u32, u32), Toolchain)> = None;
    for name in listed.lines().filter_map(|l| l.split_whitespace().next()) {
        let mut rustc = Command::new("rustup");
        rustc.args(["run", name, "rustc", "--version"]);
        let Some(version) = rustc_version(rustc) else {
            continue;
        };
        let Some(parsed) = parse_rustc_version(&version) else {
            continue;
        };
        if parsed >= min && best.as_ref().is_none_or(|(b, _)| parsed > *b) {
            best = Some((
                parsed,
                Toolchain::Rustup {
                    name: name.to_string(),
                    version,
                },
            ));
        }
    }
    if let Some((_, toolchain)) = best {
        return Ok(toolchain);
    }
    bail!(
        "it needs rustc {}.{} or newer, and no installed toolchain is: the default is {}, \
         rustup lists [{}]. Install a newer toolchain (`rustup toolchain install stable` or \
         `nightly`), or point {} at a prebuilt broker binary",
        min.0,
        min.1,
        default.as_deref().unwrap_or("unknown (rustc did not run)"),
        listed.lines().collect::<Vec<_>>().join(", "),
        NISSHI.bin_env
    )
}

/// The index added to Tansu 0.6's `header` table: its fetch looks up the headers of each
/// returned record (joined on `offset_id`) and its schema has no index, so reading N records
/// was O(N²) (a 1,000,000-record catch-up never finished). Nisshi has a primary key there.
pub const TANSU_HEADER_INDEX: &str = "create index if not exists tansu_header_topition_offset \
                                      on header (topition, offset_id)";

/// Waits (up to `timeout`) until Tansu has created its schema in `db`, then adds
/// [`TANSU_HEADER_INDEX`].
fn add_header_index(db: &Path, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match try_add(db) {
            Ok(true) => return Ok(()),
            Ok(false) if Instant::now() > deadline => bail!(
                "Tansu did not create its schema in {} within {timeout:?}",
                db.display()
            ),
            Err(e) if Instant::now() > deadline => return Err(e),
            Ok(false) | Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// `Ok(false)` while Tansu's schema is not there yet.
fn try_add(db: &Path) -> anyhow::Result<bool> {
    if !db.is_file() {
        return Ok(false);
    }
    let conn =
        rusqlite::Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
    conn.busy_timeout(Duration::from_secs(10))
        .context("setting a busy timeout")?;
    let tables: i64 = conn
        .query_row(
            "select count(*) from sqlite_master where type = 'table' and name = 'header'",
            [],
            |row| row.get(0),
        )
        .context("reading Tansu's schema")?;
    if tables == 0 {
        return Ok(false);
    }
    conn.execute(TANSU_HEADER_INDEX, [])
        .context("creating the header index")?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustc_versions_parse_stable_and_nightly() {
        assert_eq!(
            parse_rustc_version("rustc 1.95.0 (59807616e 2026-04-14)"),
            Some((1, 95))
        );
        assert_eq!(
            parse_rustc_version("rustc 1.97.0-nightly (e50aa6fba 2026-05-19)"),
            Some((1, 97))
        );
        assert_eq!(parse_rustc_version("garbage"), None);
    }

    #[test]
    fn nightly_1_97_is_new_enough_for_nisshi_and_stable_1_95_is_not() {
        assert!((1, 97) >= NISSHI.min_rustc);
        assert!((1, 95) < NISSHI.min_rustc);
    }

    #[test]
    fn distributions_are_found_by_crate_name() {
        assert_eq!(Distribution::named("nisshi").ok(), Some(NISSHI));
        assert_eq!(Distribution::named("Tansu").ok(), Some(TANSU));
        assert!(Distribution::named("kafka").is_err());
    }
}
