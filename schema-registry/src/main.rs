//! `schema-registry`: see the library for what it is. `schema-registry hash-password` prints
//! the Argon2id hash of a password read from standard input, for the users file.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context;
use clap::Parser;
use schema_registry::auth::{Role, UserName};
use schema_registry::password::{PasswordHash, DEFAULT_PARAMS};
use schema_registry::{Application, Settings};

#[derive(Debug, clap::Parser)]
#[command(name = "schema-registry", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Prints the Argon2id hash of a password read from standard input, for the users file.
    ///
    /// The password is one line of standard input, never an argument, where other users and the
    /// shell history would see it. With --user and --role, prints the whole
    /// `name:hash:role` line for SCHEMA_REGISTRY_AUTH_FILE.
    HashPassword {
        /// The user the line is for.
        #[arg(long, requires = "role")]
        user: Option<String>,
        /// `read-only` or `read-write`.
        #[arg(long, requires = "user")]
        role: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::HashPassword { user, role }) = cli.command {
        return hash_password(user.as_deref(), role.as_deref());
    }
    service_kit::telemetry::init("info,librdkafka=warn,rdkafka=warn");
    let settings = cli.settings;
    let host = settings.api_host.clone();
    let app = Application::build(settings).await?;
    tracing::info!(
        "schema registry listening on {}://{host}:{}",
        app.scheme(),
        app.port()
    );
    app.run_until_stopped().await?;
    Ok(())
}

fn hash_password(user: Option<&str>, role: Option<&str>) -> anyhow::Result<()> {
    let prefix = match (user, role) {
        (Some(user), Some(role)) => {
            let user = UserName::parse(user).map_err(|e| anyhow::anyhow!("--user: {e}"))?;
            let role = Role::parse(role).context("--role must be read-only or read-write")?;
            Some((user, role))
        }
        _ => None,
    };
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password (it will be shown as you type; pipe it in to avoid that): ");
        std::io::stderr().flush().ok();
    }
    let mut password = String::new();
    stdin
        .lock()
        .read_line(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(
        !password.is_empty(),
        "no password on standard input (e.g. `printf '%s' \"$PASSWORD\" | schema-registry hash-password`)"
    );
    let hash = PasswordHash::create(password.as_bytes(), DEFAULT_PARAMS)?.to_phc();
    match prefix {
        Some((user, role)) => println!("{}:{hash}:{}", user.as_str(), role.as_str()),
        None => println!("{hash}"),
    }
    Ok(())
}
