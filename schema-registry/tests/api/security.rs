//! The registry secured: HTTPS with a certificate of a test CA, HTTP Basic authentication with
//! a read-only and a read-write user, and no password anywhere it could leak.
//!
//! The registry runs as the real binary in a child process (so its start-up checks, its
//! `hash-password` command and its log output are the ones an operator gets), against a real
//! broker; its stdout and stderr are captured whole to look for the passwords afterwards.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::{record, V1};
use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use testkit::process::{Output, Process};
use testkit::tls::{TestPki, Validity};
use testkit::Broker;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_schema-registry");
/// Distinctive so that finding them in a log cannot be a coincidence.
const ALICE_PASSWORD: &str = "alice-Pw-7f3c9e1d";
const BOB_PASSWORD: &str = "bob-Pw-52ab90c4";
const WRONG_PASSWORD: &str = "wrong-Pw-0d1e2f3a";

/// Hashes `password` with the binary's own `hash-password` command, as an operator would.
async fn users_file_line(user: &str, role: &str, password: &str) -> anyhow::Result<String> {
    let mut child = Command::new(BINARY)
        .args(["hash-password", "--user", user, "--role", role])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(format!("{password}\n").as_bytes()).await?;
    drop(stdin);
    let output = child.wait_with_output().await?;
    let stdout = String::from_utf8(output.stdout)?;
    anyhow::ensure!(
        output.status.success(),
        "hash-password failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    anyhow::ensure!(
        !stdout.contains(password),
        "hash-password printed the password"
    );
    Ok(stdout.trim().to_string())
}

/// The registry binary running with TLS and a users file, its output captured.
struct SecureRegistry {
    url: String,
    pki: TestPki,
    client: reqwest::Client,
    process: Process,
    _users: tempfile::TempDir,
    broker: Broker,
}

impl SecureRegistry {
    async fn start() -> anyhow::Result<SecureRegistry> {
        let broker = Broker::start()?;
        let pki = TestPki::new()?;
        let issued = pki.issue("registry", &["localhost", "127.0.0.1"], Validity::Current)?;
        let users = tempfile::tempdir()?;
        let users_file = users.path().join("users");
        let text = format!(
            "# test users\n{}\n\n{}\n",
            users_file_line("alice", "read-write", ALICE_PASSWORD).await?,
            users_file_line("bob", "read-only", BOB_PASSWORD).await?
        );
        std::fs::write(&users_file, text)?;
        let mut command = std::process::Command::new(BINARY);
        command
            .env("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers())
            .env("API_HOST", "127.0.0.1")
            .env("API_PORT", "0")
            .env("API_TLS_CERT_FILE", &issued.cert)
            .env("API_TLS_KEY_FILE", &issued.key)
            .env("SCHEMA_REGISTRY_AUTH_FILE", &users_file)
            // Everything the registry can say, so that a password in any log line is caught.
            .env("RUST_LOG", "trace")
            .env("NO_COLOR", "1");
        // Killed at once when dropped, as a crash would end it.
        let mut process =
            Process::spawn("schema-registry", command, Output::Captured { echo: false })?
                .with_stop_grace(Duration::ZERO);
        let listening = process.wait_for_output(
            "a 'listening on https://' line",
            Duration::from_secs(90),
            Duration::from_millis(100),
            |lines| listening_url(&lines.join("\n")).is_some(),
        );
        let seen = process.output().join("\n");
        if let Err(e) = listening {
            anyhow::bail!("{e:#}:\n{seen}");
        }
        let url = listening_url(&seen).context("the listening line")?;
        let client = trusting(pki.ca_file())?;
        Ok(SecureRegistry {
            url,
            pki,
            client,
            process,
            _users: users,
            broker,
        })
    }

    /// Calls `method path` as `user` (None: anonymous); returns the status, headers and body.
    async fn call(
        &self,
        user: Option<(&str, &str)>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, reqwest::header::HeaderMap, String)> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.url))
            .header("Accept", V1);
        if let Some((name, password)) = user {
            request = request.basic_auth(name, Some(password));
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", V1)
                .body(serde_json::to_vec(&body)?);
        }
        let response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await?;
        Ok((status, headers, text))
    }

    fn output(&self) -> String {
        let mut lines = self.process.output().join("\n");
        lines.push('\n');
        lines
    }
}

/// `https://127.0.0.1:PORT` from the registry's "listening on" log line.
fn listening_url(output: &str) -> Option<String> {
    let start = output.find("listening on https://")? + "listening on ".len();
    let url: String = output[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"')
        .collect();
    url.rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()))
        .then_some(url)
}

/// A client trusting only the system's roots and `ca`.
fn trusting(ca: &Path) -> anyhow::Result<reqwest::Client> {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca)?)?;
    Ok(reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()?)
}

fn json(text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| format!("not JSON: {text}"))
}

const ALICE: Option<(&str, &str)> = Some(("alice", ALICE_PASSWORD));
const BOB: Option<(&str, &str)> = Some(("bob", BOB_PASSWORD));

#[tokio::test]
async fn over_https_anonymous_and_wrong_credentials_get_401_and_roles_decide_the_rest(
) -> anyhow::Result<()> {
    let r = SecureRegistry::start().await?;
    assert!(r.url.starts_with("https://127.0.0.1:"), "{}", r.url);

    // Anonymous: Confluent's 401, with the header that makes a browser ask.
    let (status, headers, body) = r.call(None, Method::GET, "/subjects", None).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = headers
        .get("www-authenticate")
        .context("no WWW-Authenticate")?
        .to_str()?;
    assert!(
        challenge.starts_with("Basic realm=\"schema-registry\""),
        "{challenge}"
    );
    assert_eq!(
        json(&body)?,
        json!({"error_code": 401, "message": "Unauthorized"})
    );
    // Wrong password, unknown user, a user name without its password: all 401.
    for user in [
        Some(("alice", WRONG_PASSWORD)),
        Some(("bob", ALICE_PASSWORD)),
        Some(("mallory", ALICE_PASSWORD)),
        Some(("alice", "")),
    ] {
        let (status, _, body) = r.call(user, Method::GET, "/subjects", None).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{user:?}: {body}");
        assert_eq!(json(&body)?["error_code"], 401);
    }
    // The probes stay open; an unknown path does not tell anonymous callers it is unknown.
    let (status, _, _) = r.call(None, Method::GET, "/health", None).await?;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = r.call(None, Method::GET, "/ready", None).await?;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = r.call(None, Method::GET, "/no/such/path", None).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The UI: served to a signed-in user (read-only is enough), 401 with the prompt otherwise.
    let (status, headers, _) = r.call(None, Method::GET, "/ui", None).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key("www-authenticate"));
    let (status, headers, page) = r.call(BOB, Method::GET, "/ui/", None).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str()?.starts_with("text/html"));
    assert!(page.contains("<html"), "{page:.200}");

    // alice (read-write) registers.
    let schema = record("Secure", &[r#"{"name":"a","type":"int"}"#]);
    let (status, _, body) = r
        .call(
            ALICE,
            Method::POST,
            "/subjects/secure-value/versions",
            Some(json!({ "schema": schema })),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = json(&body)?["id"].as_u64().context("id")?;

    // bob (read-only) reads, looks up and checks compatibility...
    let (status, _, body) = r.call(BOB, Method::GET, "/subjects", None).await?;
    assert_eq!(
        (status, json(&body)?),
        (StatusCode::OK, json!(["secure-value"]))
    );
    let (status, _, body) = r
        .call(BOB, Method::GET, &format!("/schemas/ids/{id}"), None)
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = r
        .call(
            BOB,
            Method::POST,
            "/subjects/secure-value",
            Some(json!({ "schema": schema })),
        )
        .await?;
    assert_eq!(
        (status, json(&body)?["id"].as_u64()),
        (StatusCode::OK, Some(id))
    );
    let evolved = record(
        "Secure",
        &[
            r#"{"name":"a","type":"int"}"#,
            r#"{"name":"b","type":"string","default":""}"#,
        ],
    );
    let (status, _, body) = r
        .call(
            BOB,
            Method::POST,
            "/compatibility/subjects/secure-value/versions/latest",
            Some(json!({ "schema": evolved })),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body)?["is_compatible"], true);

    // ...and every change is refused with 403 / 40301 naming the operation.
    let writes = [
        (
            Method::POST,
            "/subjects/secure-value/versions",
            Some(json!({ "schema": evolved })),
        ),
        (Method::DELETE, "/subjects/secure-value", None),
        (Method::DELETE, "/subjects/secure-value/versions/1", None),
        (
            Method::PUT,
            "/config",
            Some(json!({"compatibility": "NONE"})),
        ),
        (
            Method::PUT,
            "/config/secure-value",
            Some(json!({"compatibility": "NONE"})),
        ),
        (Method::DELETE, "/config/secure-value", None),
        (Method::PUT, "/mode", Some(json!({"mode": "READONLY"}))),
        (
            Method::PUT,
            "/mode/secure-value",
            Some(json!({"mode": "READONLY"})),
        ),
    ];
    for (method, path, body) in writes {
        let (status, _, answer) = r.call(BOB, method.clone(), path, body).await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        let answer = json(&answer)?;
        assert_eq!(answer["error_code"], 40301, "{answer}");
        let message = answer["message"].as_str().context("message")?;
        assert!(message.contains(&format!("{method} {path}")), "{message}");
    }
    // Nothing changed.
    let (_, _, body) = r
        .call(BOB, Method::GET, "/subjects/secure-value/versions", None)
        .await?;
    assert_eq!(json(&body)?, json!([1]));
    let (_, _, body) = r.call(BOB, Method::GET, "/config", None).await?;
    assert_eq!(json(&body)?["compatibilityLevel"], "BACKWARD");
    let (_, _, body) = r.call(BOB, Method::GET, "/mode", None).await?;
    assert_eq!(json(&body)?["mode"], "READWRITE");

    // alice deletes (soft, then permanently).
    let (status, _, body) = r
        .call(ALICE, Method::DELETE, "/subjects/secure-value", None)
        .await?;
    assert_eq!((status, json(&body)?), (StatusCode::OK, json!([1])));
    let (status, _, body) = r
        .call(
            ALICE,
            Method::DELETE,
            "/subjects/secure-value?permanent=true",
            None,
        )
        .await?;
    assert_eq!((status, json(&body)?), (StatusCode::OK, json!([1])));
    let (_, _, body) = r.call(ALICE, Method::GET, "/subjects", None).await?;
    assert_eq!(json(&body)?, json!([]));
    Ok(())
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_cannot_connect() -> anyhow::Result<()> {
    let r = SecureRegistry::start().await?;
    // The trusted client gets through, so what fails below is the trust, not the server.
    let (status, _, _) = r.call(None, Method::GET, "/health", None).await?;
    assert_eq!(status, StatusCode::OK);

    let other_ca = TestPki::new()?;
    for (name, client) in [
        ("system roots only", reqwest::Client::builder().build()?),
        ("another CA", trusting(other_ca.ca_file())?),
    ] {
        let error = client
            .get(format!("{}/health", r.url))
            .send()
            .await
            .expect_err(name);
        let chain = format!("{:?}", anyhow::Error::from(error));
        assert!(
            chain.contains("certificate verify failed"),
            "{name}: {chain}"
        );
    }
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = r.url.replacen("https://", "http://", 1);
    let answer = reqwest::Client::new()
        .get(format!("{plain}/health"))
        .send()
        .await;
    assert!(
        answer.as_ref().map_or(true, |a| !a.status().is_success()),
        "plain HTTP was served: {answer:?}"
    );
    Ok(())
}

#[tokio::test]
async fn no_password_reaches_the_log_metrics_or_an_error_body() -> anyhow::Result<()> {
    let r = SecureRegistry::start().await?;
    let mut bodies = Vec::new();
    let schema = record("Leak", &[r#"{"name":"a","type":"int"}"#]);
    let attempts = [
        (
            ALICE,
            Method::POST,
            "/subjects/leak-value/versions",
            Some(json!({"schema": schema})),
        ),
        (
            Some(("alice", WRONG_PASSWORD)),
            Method::GET,
            "/subjects",
            None,
        ),
        (
            Some(("mallory", WRONG_PASSWORD)),
            Method::GET,
            "/subjects",
            None,
        ),
        (BOB, Method::DELETE, "/subjects/leak-value", None),
        (
            BOB,
            Method::POST,
            "/subjects/leak-value/versions",
            Some(json!({"schema": "not json"})),
        ),
        (
            ALICE,
            Method::POST,
            "/subjects/leak-value/versions",
            Some(json!({"schema": "not json"})),
        ),
        (ALICE, Method::GET, "/schemas/ids/9999", None),
        (ALICE, Method::GET, "/metrics", None),
        (BOB, Method::GET, "/metrics", None),
        (None, Method::GET, "/metrics", None),
        (ALICE, Method::GET, "/ready", None),
    ];
    for (user, method, path, body) in attempts {
        let (status, headers, text) = r.call(user, method.clone(), path, body).await?;
        bodies.push(format!("{method} {path} -> {status} {headers:?} {text}"));
    }
    // Exactly the answers expected, so the checks below looked at real traffic.
    let statuses: Vec<&str> = bodies
        .iter()
        .map(|b| b.split(" -> ").nth(1).unwrap_or("").get(..3).unwrap_or(""))
        .collect();
    assert_eq!(
        statuses,
        ["200", "401", "401", "403", "403", "422", "404", "200", "200", "401", "200"],
        "{bodies:#?}"
    );
    // Give the access log a moment to be written, then stop reading nothing more.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = r.output();
    assert!(
        log.contains("wrong user name or password") && log.contains("/subjects/leak-value"),
        "the log was not captured:\n{log}"
    );
    // The access log has a line for refused requests too (the 401 answered by the auth
    // middleware), with its request ID.
    assert!(
        log.lines()
            .any(|l| l.contains("GET /subjects 401 ") && l.contains("request_id=")),
        "no access line for a 401:\n{log}"
    );
    // Writes name their user (an audit trail), and only the user.
    assert!(
        log.lines()
            .any(|l| l.contains("write by an authenticated user")
                && l.contains("user=\"alice\"")
                && l.contains("/subjects/leak-value/versions")),
        "no audit line for alice's write:\n{log}"
    );
    let secrets = secret_forms(&[
        ("alice", ALICE_PASSWORD),
        ("bob", BOB_PASSWORD),
        ("alice", WRONG_PASSWORD),
        ("mallory", WRONG_PASSWORD),
    ]);
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "{secret} is in the log");
        for body in &bodies {
            assert!(!body.contains(secret.as_str()), "{secret} is in {body}");
        }
    }
    assert!(
        !log.to_ascii_lowercase().contains("authorization: basic"),
        "an Authorization header is in the log"
    );
    Ok(())
}

/// Each password, and each `Authorization` header value a client sent with it.
fn secret_forms(credentials: &[(&str, &str)]) -> Vec<String> {
    let mut forms = Vec::new();
    for (user, password) in credentials {
        forms.push((*password).to_string());
        let encoded = openssl::base64::encode_block(format!("{user}:{password}").as_bytes());
        forms.push(encoded.trim_end_matches('=').to_string());
    }
    forms
}

#[tokio::test]
async fn confluents_python_client_registers_and_reads_over_https_with_basic_auth(
) -> anyhow::Result<()> {
    let python = testkit::test_python()?;
    let r = SecureRegistry::start().await?;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/confluent/secure_check.py"
    );
    let output = Command::new(&python)
        .arg(script)
        .arg(&r.url)
        .arg(r.pki.ca_file())
        .arg(format!("alice:{ALICE_PASSWORD}"))
        .arg(format!("bob:{BOB_PASSWORD}"))
        // The "no CA" check must not find the test CA through these.
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    anyhow::ensure!(
        output.status.success() && stdout.contains("confluent secure client checks passed"),
        "the Confluent client failed:\n{stdout}\n{stderr}"
    );
    assert!(
        !r.output().contains(ALICE_PASSWORD),
        "the password is in the registry's log"
    );
    Ok(())
}

/// Runs the binary with `env` and no broker, expecting it to refuse to start.
async fn start_up_error(env: &[(&str, &Path)]) -> anyhow::Result<String> {
    let mut command = Command::new(BINARY);
    command
        .env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
        .env("API_PORT", "0")
        .env_remove("API_TLS_CERT_FILE")
        .env_remove("API_TLS_KEY_FILE")
        .env_remove("SCHEMA_REGISTRY_AUTH_FILE")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .context("the registry did not stop within 20 s")??;
    anyhow::ensure!(!output.status.success(), "the registry started");
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

#[tokio::test]
async fn bad_security_settings_stop_the_start_with_a_message_naming_the_file() -> anyhow::Result<()>
{
    let pki = TestPki::new()?;
    let one = pki.issue("one", &["localhost"], Validity::Current)?;
    let two = pki.issue("two", &["localhost"], Validity::Current)?;
    let dir = tempfile::tempdir()?;

    let message = start_up_error(&[("API_TLS_CERT_FILE", &one.cert)]).await?;
    assert!(message.contains("API_TLS_KEY_FILE"), "{message}");
    let message = start_up_error(&[("API_TLS_KEY_FILE", &one.key)]).await?;
    assert!(message.contains("API_TLS_CERT_FILE"), "{message}");

    let message = start_up_error(&[
        ("API_TLS_CERT_FILE", &one.cert),
        ("API_TLS_KEY_FILE", &two.key),
    ])
    .await?;
    assert!(
        message.contains(&two.key.display().to_string()) && message.contains("does not belong"),
        "{message}"
    );
    let missing = dir.path().join("missing.pem");
    let message = start_up_error(&[
        ("API_TLS_CERT_FILE", &missing),
        ("API_TLS_KEY_FILE", &one.key),
    ])
    .await?;
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    // A certificate given as the key: not a key, and the message says which file.
    let message = start_up_error(&[
        ("API_TLS_CERT_FILE", &one.cert),
        ("API_TLS_KEY_FILE", &one.cert),
    ])
    .await?;
    assert!(
        message.contains(&one.cert.display().to_string()) && message.contains("private key"),
        "{message}"
    );

    let good = users_file_line("alice", "read-write", ALICE_PASSWORD).await?;
    let hash = good.split(':').nth(1).context("hash")?.to_string();
    let cases: [(&str, String, &[&str]); 4] = [
        (
            "unknown role",
            format!("# users\n{good}\ncarol:{hash}:admin\n"),
            &["line 3", "unknown role"],
        ),
        (
            "plain password",
            format!("dave:{ALICE_PASSWORD}:read-only\n"),
            &["line 1", "hash"],
        ),
        ("no users", "# nobody\n".to_string(), &["no users"]),
        (
            "missing field",
            format!("\n{good}\nerin\n"),
            &["line 3", "name:hash:role"],
        ),
    ];
    for (name, text, expected) in cases {
        let file = dir.path().join(name.replace(' ', "-"));
        std::fs::write(&file, &text)?;
        let message = start_up_error(&[("SCHEMA_REGISTRY_AUTH_FILE", &file)]).await?;
        for part in expected {
            assert!(message.contains(part), "{name}: {message}");
        }
        assert!(
            message.contains(&file.display().to_string()),
            "{name}: {message}"
        );
        assert!(!message.contains(&hash), "{name}: the hash is in {message}");
        assert!(
            !message.contains(ALICE_PASSWORD),
            "{name}: the password is in {message}"
        );
    }
    let unreadable: PathBuf = dir.path().join("no-such-users-file");
    let message = start_up_error(&[("SCHEMA_REGISTRY_AUTH_FILE", &unreadable)]).await?;
    assert!(
        message.contains(&unreadable.display().to_string()),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn hash_password_reads_stdin_and_refuses_an_empty_password() -> anyhow::Result<()> {
    let line = users_file_line("alice", "read-write", ALICE_PASSWORD).await?;
    let parts: Vec<&str> = line.split(':').collect();
    assert_eq!(parts.len(), 3, "{line}");
    assert_eq!(parts[0], "alice");
    assert!(
        parts[1].starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{line}"
    );
    assert_eq!(parts[2], "read-write");
    let hash = schema_registry::password::PasswordHash::parse(parts[1])?;
    assert!(hash.verify(ALICE_PASSWORD.as_bytes())?);

    let output = Command::new(BINARY)
        .arg("hash-password")
        .stdin(Stdio::null())
        .output()
        .await?;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no password"));
    Ok(())
}

#[tokio::test]
async fn with_auth_on_ready_names_the_failing_checks_but_keeps_kafkas_words_for_the_log(
) -> anyhow::Result<()> {
    let mut r = SecureRegistry::start().await?;
    r.broker.kill();
    let (status, _, body) = r.call(None, Method::GET, "/ready", None).await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let hidden = "failing; the reason is in the registry's log";
    assert_eq!(
        json(&body)?,
        json!({"status": "unavailable", "checks": [
            {"name": "kafka", "state": "failing", "detail": hidden},
            {"name": "schemas_reader", "state": "failing", "detail": hidden}]})
    );
    let log = r.output();
    assert!(
        log.lines()
            .any(|l| l.contains("not ready") && l.contains("Kafka is unreachable")),
        "the reason is not in the log:\n{log}"
    );
    Ok(())
}

/// A write refused before its body was read still gets its answer over HTTP/2: the registry
/// reads the rest of the body first, so the stream is not reset under a client still sending
/// (curl then failed with "Stream error in the HTTP/2 framing layer", now and then in CI).
#[tokio::test]
async fn a_refused_write_over_http2_gets_its_answer_not_a_reset() -> anyhow::Result<()> {
    let r = SecureRegistry::start().await?;
    let dir = tempfile::tempdir()?;
    let body = dir.path().join("body.json");
    // A large body (within the 2 MiB limit): the refusal comes while curl is still sending.
    let schema = "x".repeat(1024 * 1024);
    std::fs::write(&body, format!("{{\"schema\": \"\\\"{schema}\\\"\"}}"))?;
    let ca = r.pki.ca_file().display().to_string();
    let bob = format!("bob:{BOB_PASSWORD}");
    let data = format!("@{}", body.display());
    let url = format!("{}/subjects/big-value/versions", r.url);
    for attempt in 0..10 {
        let output = Command::new("curl")
            .args([
                "-sS",
                "--http2",
                "--max-time",
                "30",
                "-w",
                "\n%{http_version} %{http_code}",
            ])
            .args(["--cacert", &ca, "-u", &bob, "-X", "POST"])
            .args(["-H", "Content-Type: application/vnd.schemaregistry.v1+json"])
            .args(["--data-binary", &data, &url])
            .output()
            .await?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "attempt {attempt}: curl failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let (answer, status) = stdout.rsplit_once('\n').context("curl's status line")?;
        assert_eq!(status, "2 403", "attempt {attempt}: {stdout}");
        assert_eq!(json(answer)?["error_code"], 40301, "{answer}");
    }
    Ok(())
}
