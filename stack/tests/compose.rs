//! `docker-compose.yml` and the services' Dockerfiles, checked where no Docker engine runs.
//!
//! Nothing here builds an image or starts a container. Debian's docker-compose parses and
//! validates the file, hadolint lints every Dockerfile, and the rest holds both to the code:
//! every variable a service is given is one its binary reads (its `--help` lists them), the
//! topics the init container creates are the ones the services use, with the partitions they
//! expect, each image builds a workspace binary and runs it as a non-root user, every
//! long-running service has a health check the others wait for, the single Kafka node runs
//! in KRaft mode with replication factors it can satisfy, and every port is published on
//! 127.0.0.1 only. `docker-compose.secured.yml` (the services against a SASL_SSL cluster and an
//! https registry with basic auth) is held to the same variables, and its passwords reach the
//! containers only as compose secrets. Both files run CartService as two replicas in one
//! consumer group, each with its own volume, host port and advertised URL.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// The README's test command, which installs docker-compose and hadolint and builds every binary.
const README_COMMAND: &str = "cargo run -p stack -- test";

/// Variables service-kit reads for every binary (they are not clap flags, so `--help` omits
/// them), each with the text in service-kit's sources that shows it still does.
const SERVICE_KIT_ENV: [(&str, &str); 2] = [
    ("LOG_FORMAT", "\"LOG_FORMAT\""),
    ("RUST_LOG", "try_from_default_env"),
];

/// service-kit turns every `KAFKA_PROPERTY_<NAME>` into a librdkafka property.
const PASS_THROUGH_PREFIX: &str = "KAFKA_PROPERTY_";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn compose_file() -> PathBuf {
    root().join("docker-compose.yml")
}

/// The example of the services against a secured cluster and registry.
const SECURED_FILE: &str = "docker-compose.secured.yml";

/// Runs Debian's docker-compose on the root's compose file.
fn docker_compose(args: &[&str]) -> std::process::Output {
    docker_compose_on(&compose_file(), &[], args)
}

/// Runs Debian's docker-compose on `file` with `env` added to its environment.
fn docker_compose_on(file: &Path, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    Command::new("docker-compose")
        .arg("-f")
        .arg(file)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run docker-compose ({e}); `{README_COMMAND}` installs Debian's \
                 docker-compose, or `apt-get install docker-compose`"
            )
        })
}

/// The compose file as docker-compose resolves it (normalized, defaults filled in).
fn config() -> &'static Value {
    static CONFIG: OnceLock<Value> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let output = docker_compose(&["config"]);
        assert!(
            output.status.success(),
            "docker-compose config rejects docker-compose.yml:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_yaml_ng::from_slice(&output.stdout).unwrap()
    })
}

fn services() -> &'static serde_json::Map<String, Value> {
    config()["services"]
        .as_object()
        .expect("docker-compose.yml has services")
}

/// A YAML scalar as the text a process would see in its environment.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A published port: host address (empty: every interface), host port, container port.
#[derive(Debug, PartialEq)]
struct Published {
    host_ip: String,
    published: String,
    target: String,
}

/// A service's published ports, in either form docker-compose's `config` prints: the long form
/// (`target`, `published`, `host_ip`) or `[HOST_IP:]PUBLISHED:TARGET[/PROTOCOL]`.
fn published_ports(service: &Value) -> Vec<Published> {
    let Some(ports) = service["ports"].as_array() else {
        return Vec::new();
    };
    ports
        .iter()
        .map(|port| match port {
            Value::Object(_) => Published {
                host_ip: scalar(&port["host_ip"]),
                published: scalar(&port["published"]),
                target: scalar(&port["target"]),
            },
            other => {
                let text = scalar(other);
                let text = text.split('/').next().unwrap_or_default();
                let parts: Vec<&str> = text.rsplitn(3, ':').collect();
                match parts.as_slice() {
                    [target] => Published {
                        host_ip: String::new(),
                        published: String::new(),
                        target: target.to_string(),
                    },
                    [target, published] => Published {
                        host_ip: String::new(),
                        published: published.to_string(),
                        target: target.to_string(),
                    },
                    [target, published, host_ip] => Published {
                        host_ip: host_ip.to_string(),
                        published: published.to_string(),
                        target: target.to_string(),
                    },
                    _ => panic!("unreadable port {text:?}"),
                }
            }
        })
        .collect()
}

/// A service's `environment`, in either of compose's two forms.
fn environment(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), scalar(v))).collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let item = scalar(item);
                let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `depends_on` as name → condition (the short form means `service_started`).
fn depends_on(service: &Value) -> BTreeMap<String, String> {
    match &service["depends_on"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let condition = v["condition"].as_str().unwrap_or("service_started");
                (k.clone(), condition.to_string())
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| (scalar(item), "service_started".to_string()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// A service's command (or a health check's test) as one text.
fn command_text(value: &Value) -> String {
    match value {
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(" "),
        other => scalar(other),
    }
}

fn has_compose_healthcheck(service: &Value) -> bool {
    let check = &service["healthcheck"];
    let test = command_text(&check["test"]);
    check.is_object() && check["disable"] != Value::Bool(true) && !test.is_empty() && test != "NONE"
}

/// One instruction of a Dockerfile, with the build stage it belongs to (0 before any FROM).
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
    stage: usize,
}

/// The instructions of a Dockerfile: continuation lines joined, comments dropped.
fn parse_dockerfile(text: &str) -> Vec<Instruction> {
    let mut instructions = Vec::new();
    let mut stage = 0;
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let full = std::mem::take(&mut pending);
        let (keyword, args) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            stage += 1;
        }
        instructions.push(Instruction {
            keyword,
            args: args.split_whitespace().collect::<Vec<_>>().join(" "),
            stage,
        });
    }
    instructions
}

/// A Dockerfile a compose service builds.
struct Image {
    service: String,
    context: PathBuf,
    path: PathBuf,
    instructions: Vec<Instruction>,
}

impl Image {
    fn stages(&self) -> usize {
        self.instructions.iter().map(|i| i.stage).max().unwrap_or(0)
    }

    /// The instructions of the final (runtime) stage.
    fn runtime(&self) -> impl Iterator<Item = &Instruction> {
        let last = self.stages();
        self.instructions.iter().filter(move |i| i.stage == last)
    }

    fn runtime_args(&self, keyword: &str) -> Vec<&str> {
        self.runtime()
            .filter(|i| i.keyword == keyword)
            .map(|i| i.args.as_str())
            .collect()
    }

    /// The file name of the program the ENTRYPOINT runs.
    fn binary(&self) -> String {
        let entrypoint = self.runtime_args("ENTRYPOINT");
        let entrypoint = entrypoint.last().unwrap_or_else(|| {
            panic!(
                "{}: the runtime stage has no ENTRYPOINT",
                self.path.display()
            )
        });
        let program = match serde_json::from_str::<Vec<String>>(entrypoint) {
            Ok(argv) => argv.first().cloned().unwrap_or_default(),
            Err(_) => entrypoint.split_whitespace().next().unwrap().to_string(),
        };
        program.rsplit('/').next().unwrap().to_string()
    }

    /// The runtime stage's `ENV` (the `KEY=value` form).
    fn env(&self) -> BTreeMap<String, String> {
        self.runtime_args("ENV")
            .iter()
            .flat_map(|args| args.split_whitespace())
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect()
    }
}

/// The Dockerfile of every service compose builds.
fn images() -> Vec<Image> {
    let images: Vec<Image> = services()
        .iter()
        .filter(|(_, service)| service["build"].is_object())
        .map(|(name, service)| {
            let context = PathBuf::from(scalar(&service["build"]["context"]));
            let dockerfile = service["build"]["dockerfile"]
                .as_str()
                .unwrap_or("Dockerfile");
            let path = context.join(dockerfile);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!("service {name} builds {}: {e}", path.display());
            });
            Image {
                service: name.clone(),
                context,
                path,
                instructions: parse_dockerfile(&text),
            }
        })
        .collect();
    assert!(
        images.len() >= 2,
        "docker-compose.yml builds CartService and OrderService from their Dockerfiles"
    );
    images
}

/// The variables a binary reads according to its `--help`, each with its default.
fn binary_env(binary: &str) -> BTreeMap<String, Option<String>> {
    let path = common::bin_dir().join(binary);
    assert!(
        path.is_file(),
        "{} is missing: build it first (`cargo build -p {binary}`; `{README_COMMAND}` builds \
         every binary before the tests)",
        path.display()
    );
    let output = Command::new(&path)
        .arg("--help")
        .env_clear()
        .output()
        .unwrap();
    assert!(output.status.success(), "{binary} --help failed");
    // One line, so a wrapped help text reads the same.
    let help = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut env = BTreeMap::new();
    for (start, _) in help.match_indices("[env: ") {
        let rest = &help[start + "[env: ".len()..];
        // `[env: NAME=value]`, or `[env: NAME]` where clap hides the value (secrets).
        let name = &rest[..rest.find(['=', ']']).unwrap()];
        let after = &rest[rest.find(']').unwrap() + 1..];
        let default = after
            .strip_prefix(" [default: ")
            .map(|d| d[..d.find(']').unwrap()].to_string());
        env.insert(name.to_string(), default);
    }
    assert!(!env.is_empty(), "{binary} --help lists no [env: ...]");
    env
}

/// The crate a Dockerfile builds (`cargo build ... -p <crate>`), checking the build flags.
fn built_crate(image: &Image) -> String {
    let builds: Vec<&str> = image
        .instructions
        .iter()
        .filter(|i| i.keyword == "RUN" && i.args.contains("cargo build"))
        .map(|i| i.args.as_str())
        .collect();
    assert_eq!(
        builds.len(),
        1,
        "{}: expected one RUN with `cargo build`",
        image.path.display()
    );
    let words: Vec<&str> = builds[0].split_whitespace().collect();
    for flag in ["--release", "--locked"] {
        assert!(
            words.contains(&flag),
            "{}: cargo build without {flag}",
            image.path.display()
        );
    }
    let package = words
        .windows(2)
        .find(|w| w[0] == "-p" || w[0] == "--package")
        .map(|w| w[1].to_string())
        .unwrap_or_else(|| panic!("{}: cargo build without -p", image.path.display()));
    package
}

/// The workspace's member directories, from the root manifest.
fn workspace_members() -> Vec<String> {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let start = manifest.find("members = [").unwrap() + "members = [".len();
    let list = &manifest[start..start + manifest[start..].find(']').unwrap()];
    list.split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

/// The member directory whose package is called `name`.
fn member_dir(name: &str) -> Option<PathBuf> {
    workspace_members()
        .into_iter()
        .map(|m| root().join(m))
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .map(|t| t.contains(&format!("name = \"{name}\"")))
                .unwrap_or(false)
        })
}

/// The effective environment of a built service: the image's ENV, then compose's.
fn effective_env(image: &Image) -> BTreeMap<String, String> {
    let mut env = image.env();
    env.extend(environment(&services()[&image.service]));
    env
}

/// The value a binary sees for `name`: set by the image or compose, else its default.
fn value_of(image: &Image, help: &BTreeMap<String, Option<String>>, name: &str) -> Option<String> {
    effective_env(image)
        .get(name)
        .cloned()
        .or_else(|| help.get(name).cloned().flatten())
}

/// A topic the init service creates.
#[derive(Debug)]
struct CreatedTopic {
    partitions: Option<u32>,
    replication: Option<u32>,
}

/// The one-shot service running `kafka-topics.sh --create`, and the topics it creates.
fn topic_init() -> (String, BTreeMap<String, CreatedTopic>) {
    let inits: Vec<(&String, String)> = services()
        .iter()
        .map(|(name, s)| (name, command_text(&s["command"])))
        .filter(|(_, command)| command.contains("kafka-topics") && command.contains("--create"))
        .collect();
    assert_eq!(
        inits.len(),
        1,
        "expected one service creating the topics with kafka-topics.sh --create"
    );
    let (name, command) = &inits[0];
    let mut topics = BTreeMap::new();
    let segments = command
        .split(['\n', ';'])
        .flat_map(|s| s.split("&&"))
        .filter(|s| s.contains("--create"));
    for segment in segments {
        let words: Vec<&str> = segment.split_whitespace().collect();
        let option = |flag: &str| -> Option<String> {
            words.iter().enumerate().find_map(|(i, w)| {
                if *w == flag {
                    words.get(i + 1).map(|v| v.to_string())
                } else {
                    w.strip_prefix(&format!("{flag}=")).map(str::to_string)
                }
            })
        };
        let topic = option("--topic").unwrap_or_else(|| panic!("no --topic in `{segment}`"));
        topics.insert(
            topic,
            CreatedTopic {
                partitions: option("--partitions").map(|p| p.parse().unwrap()),
                replication: option("--replication-factor").map(|r| r.parse().unwrap()),
            },
        );
    }
    (name.to_string(), topics)
}

/// The services running a Kafka broker (KRaft `process.roles` containing `broker`).
fn brokers() -> Vec<String> {
    services()
        .iter()
        .filter(|(_, s)| {
            environment(s)
                .get("KAFKA_PROCESS_ROLES")
                .is_some_and(|roles| roles.split(',').any(|r| r.trim() == "broker"))
        })
        .map(|(name, _)| name.clone())
        .collect()
}

#[test]
fn compose_file_is_valid() {
    let output = docker_compose(&["config", "-q"]);
    assert!(
        output.status.success(),
        "docker-compose config -q rejects docker-compose.yml:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every Dockerfile of the repository, wherever it is.
fn all_dockerfiles(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            if !name.starts_with('.') && name != "target" && name != "node_modules" {
                all_dockerfiles(&path, found);
            }
        } else if name == "Dockerfile"
            || name.starts_with("Dockerfile.")
            || name.ends_with(".Dockerfile")
        {
            found.push(path);
        }
    }
}

#[test]
fn dockerfiles_pass_hadolint() {
    let hadolint = std::env::var_os("STACK_HADOLINT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/venv/bin/hadolint"));
    assert!(
        hadolint.is_file(),
        "hadolint is not at {} (set STACK_HADOLINT): `{README_COMMAND}` installs it",
        hadolint.display()
    );
    let mut dockerfiles = Vec::new();
    all_dockerfiles(&root(), &mut dockerfiles);
    dockerfiles.sort();
    for image in images() {
        assert!(
            dockerfiles.contains(&image.path),
            "{} not found",
            image.path.display()
        );
    }
    let output = Command::new(&hadolint)
        .args(["--no-color", "--failure-threshold", "warning"])
        .args(&dockerfiles)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "hadolint finds problems (warning or worse) in {dockerfiles:?}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn services_are_given_only_variables_their_binaries_read() {
    let service_kit: String = ["lib.rs", "telemetry.rs", "kafka.rs"]
        .iter()
        .map(|f| std::fs::read_to_string(root().join("service-kit/src").join(f)).unwrap())
        .collect();
    for (name, needle) in SERVICE_KIT_ENV {
        assert!(
            service_kit.contains(needle),
            "service-kit no longer reads {name}"
        );
    }
    assert!(service_kit.contains(&format!("\"{PASS_THROUGH_PREFIX}\"")));

    let mut problems = Vec::new();
    for image in images() {
        let binary = image.binary();
        let help = binary_env(&binary);
        let manifest = member_dir(&built_crate(&image))
            .map(|dir| std::fs::read_to_string(dir.join("Cargo.toml")).unwrap())
            .unwrap_or_default();
        let uses_service_kit = manifest.contains("service-kit");
        let given = effective_env(&image);
        for var in given.keys() {
            let read = help.contains_key(var)
                || (uses_service_kit
                    && (SERVICE_KIT_ENV.iter().any(|(n, _)| n == var)
                        || var.starts_with(PASS_THROUGH_PREFIX)));
            if !read {
                problems.push(format!(
                    "{}: {binary} does not read {var} (it reads {:?}, {:?} and {PASS_THROUGH_PREFIX}*)",
                    image.service,
                    help.keys().collect::<Vec<_>>(),
                    SERVICE_KIT_ENV.map(|(n, _)| n),
                ));
            }
        }

        // Reachable from outside the container, on the port compose publishes and checks.
        assert_eq!(
            value_of(&image, &help, "API_HOST").as_deref(),
            Some("0.0.0.0"),
            "{}: API_HOST must be 0.0.0.0 inside a container",
            image.service
        );
        let port = value_of(&image, &help, "API_PORT").unwrap();
        let service = &services()[&image.service];
        let targets: Vec<String> = published_ports(service)
            .into_iter()
            .map(|p| p.target)
            .collect();
        assert_eq!(
            targets,
            vec![port.clone()],
            "{}: publishes {targets:?}, listens on {port}",
            image.service
        );
        let image_port = image.env().get("API_PORT").cloned().unwrap_or_default();
        assert!(
            image
                .runtime_args("EXPOSE")
                .iter()
                .any(|e| e.split_whitespace().any(|p| p == image_port)),
            "{}: EXPOSE is not its API_PORT {image_port}",
            image.path.display()
        );
        if has_compose_healthcheck(service) {
            let test = command_text(&service["healthcheck"]["test"]);
            assert!(
                test.contains(&format!(":{port}/")),
                "{}: the health check ({test}) does not ask port {port}",
                image.service
            );
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn init_creates_the_topics_the_services_use() {
    let (init, topics) = topic_init();
    let brokers = brokers().len() as u32;
    for (topic, created) in &topics {
        let replication = created.replication.unwrap_or(1);
        assert!(
            (1..=brokers).contains(&replication),
            "{init} creates {topic} with {replication} replicas, there are {brokers} brokers"
        );
    }
    let mut users = 0;
    for image in images() {
        let help = binary_env(&image.binary());
        let Some(topic) = value_of(&image, &help, "KAFKA_TOPIC") else {
            continue;
        };
        users += 1;
        let created = topics.get(&topic).unwrap_or_else(|| {
            panic!(
                "{} uses topic {topic}, {init} creates {:?}",
                image.service,
                topics.keys()
            )
        });
        if let Some(partitions) = value_of(&image, &help, "KAFKA_TOPIC_PARTITIONS") {
            assert_eq!(
                created.partitions.map(|p| p.to_string()),
                Some(partitions.clone()),
                "{} expects {topic} with {partitions} partitions",
                image.service
            );
        }
        if let Some(dlq) = value_of(&image, &help, "KAFKA_DLQ_TOPIC") {
            assert!(
                topics.contains_key(&dlq),
                "{} dead-letters to {dlq}, {init} creates {:?}",
                image.service,
                topics.keys()
            );
        }
        assert_eq!(
            depends_on(&services()[&image.service])
                .get(&init)
                .map(String::as_str),
            Some("service_completed_successfully"),
            "{} must wait for {init} to have created the topics",
            image.service
        );
    }
    assert!(users >= 2, "CartService and OrderService both use a topic");
}

#[test]
fn long_running_services_have_health_checks_the_others_wait_for() {
    let images = images();
    let one_shot: BTreeSet<String> = services()
        .values()
        .flat_map(|s| depends_on(s).into_iter())
        .filter(|(_, condition)| condition == "service_completed_successfully")
        .map(|(name, _)| name)
        .collect();
    let (init, _) = topic_init();
    assert!(one_shot.contains(&init), "nothing waits for {init}");
    let healthy = |name: &str| {
        has_compose_healthcheck(&services()[name])
            || images
                .iter()
                .any(|i| i.service == name && !i.runtime_args("HEALTHCHECK").is_empty())
    };
    for (name, service) in services() {
        for (dependency, condition) in depends_on(service) {
            assert!(
                services().contains_key(&dependency),
                "{name} depends on unknown {dependency}"
            );
            match condition.as_str() {
                "service_healthy" => assert!(
                    healthy(&dependency),
                    "{name} waits for {dependency} to be healthy; it has no health check"
                ),
                "service_completed_successfully" => {}
                other => panic!("{name} waits for {dependency} only with {other}"),
            }
        }
        if one_shot.contains(name) {
            let restart = scalar(&service["restart"]);
            assert!(
                restart.is_empty() || restart == "no",
                "{name} runs once; restarting it would never complete"
            );
        } else {
            assert!(healthy(name), "{name} has no health check");
        }
    }
    for image in &images {
        assert!(
            !image.runtime_args("HEALTHCHECK").is_empty(),
            "{}: the image has no HEALTHCHECK",
            image.path.display()
        );
    }
}

#[test]
fn kafka_is_one_kraft_node_with_fitting_replication_factors() {
    let brokers = brokers();
    assert!(!brokers.is_empty(), "no Kafka broker (KAFKA_PROCESS_ROLES)");
    let count = brokers.len() as u32;
    let mut advertised = BTreeSet::new();
    for name in &brokers {
        let env = environment(&services()[name]);
        for required in [
            "KAFKA_CONTROLLER_QUORUM_VOTERS",
            "CLUSTER_ID",
            "KAFKA_LOG_DIRS",
        ] {
            assert!(env.contains_key(required), "{name} without {required}");
        }
        let listeners = env
            .get("KAFKA_ADVERTISED_LISTENERS")
            .unwrap_or_else(|| panic!("{name} without KAFKA_ADVERTISED_LISTENERS"));
        for listener in listeners.split(',') {
            advertised.insert(listener.split("://").nth(1).unwrap().to_string());
        }
        // A single node must not expect the default three replicas of the internal topics.
        if count < 3 {
            for internal in [
                "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
            ] {
                assert!(env.contains_key(internal), "{name} without {internal}");
            }
        }
    }
    for (name, service) in services() {
        let image = scalar(&service["image"]);
        assert!(
            !image.contains("zookeeper"),
            "{name}: KRaft mode, no ZooKeeper"
        );
        if !service["build"].is_object() {
            let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
            assert!(
                !tag.is_empty() && tag != "latest" && !tag.contains('/'),
                "{name}: pin the image version ({image})"
            );
        }
        for (var, value) in environment(service) {
            assert!(!var.contains("ZOOKEEPER"), "{name}: {var}, but KRaft mode");
            if var.ends_with("REPLICATION_FACTOR") || var.ends_with("MIN_ISR") {
                let n: u32 = value.parse().unwrap();
                assert!(
                    (1..=count).contains(&n),
                    "{name}: {var}={n} with {count} broker(s)"
                );
            }
            // Every client reaches an advertised listener.
            if var.contains("BOOTSTRAP") && !brokers.contains(name) {
                for server in value.split(',') {
                    let address = server.rsplit("://").next().unwrap();
                    assert!(
                        advertised.contains(address),
                        "{name}: {var} names {address}; Kafka advertises {advertised:?}"
                    );
                }
            }
            // Every URL of another container names a service of this file.
            if let Some(rest) = value.strip_prefix("http://") {
                let host = rest.split([':', '/']).next().unwrap();
                assert!(
                    ["0.0.0.0", "localhost", "127.0.0.1"].contains(&host)
                        || services().contains_key(host),
                    "{name}: {var} names {host}, which is no service"
                );
            }
        }
    }
    let (init, _) = topic_init();
    let command = command_text(&services()[&init]["command"]);
    let words: Vec<&str> = command.split_whitespace().collect();
    for pair in words.windows(2).filter(|w| w[0] == "--bootstrap-server") {
        assert!(
            advertised.contains(pair[1]),
            "{init} connects to {}; Kafka advertises {advertised:?}",
            pair[1]
        );
    }
}

#[test]
fn images_build_workspace_binaries_and_run_as_non_root() {
    for image in images() {
        let path = image.path.display();
        assert!(image.stages() >= 2, "{path}: build and runtime stages");

        // Base images are pinned (after the ARG defaults before the first FROM).
        let args: BTreeMap<String, String> = image
            .instructions
            .iter()
            .filter(|i| i.keyword == "ARG" && i.stage == 0)
            .filter_map(|i| i.args.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for from in image.instructions.iter().filter(|i| i.keyword == "FROM") {
            let mut base = from.args.split_whitespace().next().unwrap().to_string();
            for (k, v) in &args {
                base = base.replace(&format!("${{{k}}}"), v);
            }
            let tag = base.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
            assert!(
                !tag.is_empty() && tag != "latest" && !base.contains('$'),
                "{path}: pin {base}"
            );
        }

        // The runtime stage runs the binary as a fixed, non-root user.
        let users = image.runtime_args("USER");
        let user = users
            .last()
            .unwrap_or_else(|| panic!("{path}: the runtime stage sets no USER (root)"));
        let name = user.split(':').next().unwrap();
        assert!(
            name != "root" && name != "0",
            "{path}: runs as {user}, must not be root"
        );
        assert!(
            !image.runtime_args("EXPOSE").is_empty(),
            "{path}: EXPOSE the port"
        );

        // The binary is one of the workspace's.
        let binary = image.binary();
        let krate = built_crate(&image);
        let dir = member_dir(&krate)
            .unwrap_or_else(|| panic!("{path}: builds {krate}, not a workspace member"));
        assert!(
            (binary == krate && dir.join("src/main.rs").is_file())
                || dir.join(format!("src/bin/{binary}.rs")).is_file(),
            "{path}: runs {binary}, which {krate} does not build"
        );

        // What it copies exists: the context's files, or what a build stage produced.
        for copy in image.instructions.iter().filter(|i| i.keyword == "COPY") {
            let words: Vec<&str> = copy.args.split_whitespace().collect();
            let from = words.iter().find_map(|w| w.strip_prefix("--from="));
            let paths: Vec<&str> = words
                .iter()
                .filter(|w| !w.starts_with("--"))
                .copied()
                .collect();
            let sources = &paths[..paths.len() - 1];
            for source in sources {
                match from {
                    None => assert!(
                        image.context.join(source).exists(),
                        "{path}: COPY {source}, which the context lacks"
                    ),
                    Some(stage) => {
                        let produced = image.instructions.iter().any(|i| {
                            i.keyword == "RUN"
                                && i.args.contains(source)
                                && image.instructions.iter().any(|f| {
                                    f.keyword == "FROM"
                                        && f.stage == i.stage
                                        && f.args.to_ascii_lowercase().ends_with(&format!(
                                            " as {}",
                                            stage.to_ascii_lowercase()
                                        ))
                                })
                        });
                        assert!(produced, "{path}: no RUN of stage {stage} makes {source}");
                    }
                }
            }
        }
    }
}

/// Whether a `.dockerignore` pattern matches `path` or one of its parent directories.
fn ignored_by(pattern: &str, path: &str) -> bool {
    fn matches(pattern: &[&str], path: &[&str]) -> bool {
        match (pattern.first(), path.first()) {
            (None, _) => true, // a matched directory takes its contents with it
            (Some(&"**"), _) => {
                matches(&pattern[1..], path) || (!path.is_empty() && matches(pattern, &path[1..]))
            }
            (Some(p), Some(x)) => {
                glob(p.as_bytes(), x.as_bytes()) && matches(&pattern[1..], &path[1..])
            }
            (Some(_), None) => false,
        }
    }
    fn glob(p: &[u8], x: &[u8]) -> bool {
        match (p.first(), x.first()) {
            (None, None) => true,
            (Some(b'*'), _) => glob(&p[1..], x) || (!x.is_empty() && glob(p, &x[1..])),
            (Some(b'?'), Some(_)) => glob(&p[1..], &x[1..]),
            (Some(a), Some(b)) => a == b && glob(&p[1..], &x[1..]),
            _ => false,
        }
    }
    let pattern: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    let path: Vec<&str> = path.split('/').collect();
    matches(&pattern, &path)
}

#[test]
fn dockerignore_keeps_what_the_build_needs() {
    let ignore = std::fs::read_to_string(root().join(".dockerignore"))
        .expect("a .dockerignore keeps target/ and .data/ out of the build context");
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .collect();
    for heavy in [
        "target/debug/cart-service",
        ".data/x",
        ".tools/venv",
        ".git/HEAD",
    ] {
        assert!(
            patterns.iter().any(|p| ignored_by(p, heavy)),
            ".dockerignore should leave out {heavy}"
        );
    }
    // Every member's manifest and sources (cargo build -p reads them all), the lockfile, and
    // the schema order-events compiles in.
    let mut needed = vec![
        "Cargo.toml".to_string(),
        "Cargo.lock".to_string(),
        "schemas/order-event.avsc".to_string(),
    ];
    for member in workspace_members() {
        needed.push(format!("{member}/Cargo.toml"));
        needed.push(format!("{member}/src"));
    }
    for path in &needed {
        for pattern in &patterns {
            assert!(
                !ignored_by(pattern, path),
                ".dockerignore's {pattern} leaves out {path}, which the build needs"
            );
        }
    }
}

/// `docker-compose.secured.yml` as docker-compose resolves it, with the variables it requires
/// set to placeholders (docker-compose does not open the secret files to print the config).
fn secured_config() -> &'static Value {
    static CONFIG: OnceLock<Value> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let output = docker_compose_on(&root().join(SECURED_FILE), &SECURED_ENV, &["config"]);
        assert!(
            output.status.success(),
            "docker-compose config rejects {SECURED_FILE}:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_yaml_ng::from_slice(&output.stdout).unwrap()
    })
}

/// What an operator exports before using the secured example (its header says so).
const SECURED_ENV: [(&str, &str); 5] = [
    ("KAFKA_BOOTSTRAP_SERVERS", "pkc-test.example.com:9092"),
    ("KAFKA_SASL_USERNAME", "API-KEY"),
    ("SCHEMA_REGISTRY_URL", "https://psrc-test.example.com"),
    ("KAFKA_SASL_PASSWORD_SECRET", "/secrets/kafka-api-secret"),
    (
        "SCHEMA_REGISTRY_USER_INFO_SECRET",
        "/secrets/registry-user-info",
    ),
];

#[test]
fn every_port_is_published_on_loopback_only() {
    for (file, config) in [
        ("docker-compose.yml", config()),
        (SECURED_FILE, secured_config()),
    ] {
        let services = config["services"].as_object().unwrap();
        for (name, service) in services {
            for port in published_ports(service) {
                assert_eq!(
                    port.host_ip, "127.0.0.1",
                    "{file}: {name} publishes {port:?} beyond this machine"
                );
                assert!(!port.published.is_empty(), "{file}: {name}: {port:?}");
            }
        }
    }
}

#[test]
fn the_secured_example_refuses_to_start_without_its_settings() {
    let output = docker_compose_on(
        &root().join(SECURED_FILE),
        &SECURED_ENV[1..],
        &["config", "-q"],
    );
    assert!(!output.status.success(), "config passed without a cluster");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("set KAFKA_BOOTSTRAP_SERVERS"), "{stderr}");
}

/// The variable names of the commented-out `NAME: value` lines: optional settings the reader
/// may uncomment, which must be read as much as the others.
fn commented_variables(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.trim_start().strip_prefix('#'))
        .filter_map(|line| line.trim_start().split_once(": "))
        .map(|(name, _)| name.to_string())
        .filter(|name| {
            name.len() > 2
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .collect()
}

#[test]
fn the_secured_example_sets_only_read_variables_and_passes_passwords_as_secrets() {
    let config = secured_config();
    let services = config["services"].as_object().unwrap();
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["cart-service", "cart-service-2", "order-service"])
    );
    let declared = config["secrets"].as_object().expect("top-level secrets");
    let text = std::fs::read_to_string(root().join(SECURED_FILE)).unwrap();
    let optional = commented_variables(&text);
    for name in ["KAFKA_PROPERTY_SSL_CA_LOCATION", "SCHEMA_REGISTRY_CA_FILE"] {
        assert!(
            optional.iter().any(|o| o == name),
            "{SECURED_FILE} shows no optional {name}: {optional:?}"
        );
    }
    let images = images();
    let mut problems = Vec::new();
    for (name, service) in services {
        // The same image as docker-compose.yml builds, so the same binary.
        let image = images.iter().find(|i| i.service == *name).unwrap();
        let dockerfile = PathBuf::from(scalar(&service["build"]["context"]))
            .join(service["build"]["dockerfile"].as_str().unwrap());
        assert_eq!(dockerfile, image.path, "{name} builds another Dockerfile");
        let binary = image.binary();
        let help = binary_env(&binary);
        let env = environment(service);

        assert_eq!(
            env["KAFKA_PROPERTY_SECURITY_PROTOCOL"], "SASL_SSL",
            "{name}"
        );
        assert_eq!(env["KAFKA_PROPERTY_SASL_MECHANISM"], "PLAIN", "{name}");
        assert_eq!(env["KAFKA_PROPERTY_SASL_USERNAME"], "API-KEY", "{name}");
        assert_eq!(env["KAFKA_BOOTSTRAP_SERVERS"], SECURED_ENV[0].1, "{name}");
        assert!(env["SCHEMA_REGISTRY_URL"].starts_with("https://"), "{name}");

        for var in env.keys().chain(optional.iter()) {
            let read = help.contains_key(var)
                || SERVICE_KIT_ENV.iter().any(|(n, _)| n == var)
                || var.starts_with(PASS_THROUGH_PREFIX);
            if !read {
                problems.push(format!("{name}: {binary} does not read {var}"));
            }
            let secret_like = ["PASSWORD", "SECRET", "USER_INFO"]
                .iter()
                .any(|word| var.contains(word));
            if secret_like && !var.ends_with("_FILE") {
                problems.push(format!("{name}: {var} puts a secret in the environment"));
            }
        }

        // Each *_FILE secret points at a secret mounted into this service, backed by a file.
        let mounted: BTreeMap<String, String> = service["secrets"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|item| {
                        let source = match item {
                            Value::Object(_) => scalar(&item["source"]),
                            other => scalar(other),
                        };
                        let target = match scalar(&item["target"]) {
                            t if t.is_empty() => format!("/run/secrets/{source}"),
                            t if t.starts_with('/') => t,
                            t => format!("/run/secrets/{t}"),
                        };
                        (target, source)
                    })
                    .collect()
            })
            .unwrap_or_default();
        for var in [
            "KAFKA_SASL_PASSWORD_FILE",
            "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE",
        ] {
            let path = env
                .get(var)
                .unwrap_or_else(|| panic!("{name}: {var} is not set"));
            let source = mounted
                .get(path)
                .unwrap_or_else(|| panic!("{name}: {var}={path} is no mounted secret"));
            let file = scalar(&declared[source.as_str()]["file"]);
            assert!(
                SECURED_ENV.iter().any(|(_, v)| *v == file),
                "{name}: secret {source} is not the operator's file ({file})"
            );
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A service's volumes as (source, target), in either form docker-compose's `config` prints:
/// the long form (`source`, `target`) or `SOURCE:TARGET[:MODE]`.
fn volumes(service: &Value) -> Vec<(String, String)> {
    let Some(volumes) = service["volumes"].as_array() else {
        return Vec::new();
    };
    volumes
        .iter()
        .map(|volume| match volume {
            Value::Object(_) => (scalar(&volume["source"]), scalar(&volume["target"])),
            other => {
                let text = scalar(other);
                let mut parts = text.split(':');
                let source = parts.next().unwrap_or_default().to_string();
                let target = parts.next().unwrap_or_default().to_string();
                (source, target)
            }
        })
        .collect()
}

/// What may differ between two replicas of one service: where they are reached and where they
/// keep their data.
fn without_per_replica_settings(service: &Value) -> Value {
    let mut service = service.clone();
    let object = service.as_object_mut().unwrap();
    object.remove("ports");
    object.remove("volumes");
    if let Some(Value::Object(env)) = object.get_mut("environment") {
        env.remove("CART_ADVERTISED_URL");
    }
    service
}

/// Compose cannot give `deploy.replicas` a volume and a URL each, so CartService's replicas are
/// services of their own building the same Dockerfile: each with its own named volume at its
/// DATA_DIR, its own host port and its own in-network URL, in the same consumer group, and
/// otherwise alike (one YAML anchor, nothing written twice).
#[test]
fn cart_replicas_share_a_group_and_nothing_else_they_must_not() {
    let cart_help = binary_env("cart-service");
    for (file, config) in [
        ("docker-compose.yml", config()),
        (SECURED_FILE, secured_config()),
    ] {
        let services = config["services"].as_object().unwrap();
        let declared = config["volumes"].as_object().unwrap();
        let replicas: Vec<(&String, &Value)> = services
            .iter()
            .filter(|(_, s)| {
                s["build"]["dockerfile"]
                    .as_str()
                    .is_some_and(|d| d.ends_with("cart-service/Dockerfile"))
            })
            .collect();
        let names: Vec<&str> = replicas.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["cart-service", "cart-service-2"], "{file}");

        let (first_name, first) = replicas[0];
        let mut sources = BTreeSet::new();
        let mut urls = BTreeSet::new();
        let mut host_ports = BTreeSet::new();
        let mut groups = BTreeSet::new();
        for (name, service) in &replicas {
            let env = environment(service);
            let value = |var: &str| {
                env.get(var)
                    .cloned()
                    .or_else(|| cart_help.get(var).cloned().flatten())
            };
            let port = value("API_PORT").unwrap();
            let data_dir = value("DATA_DIR").unwrap();

            // Its own named volume at its DATA_DIR (two instances on one directory refuse
            // to start).
            let at_data: Vec<String> = volumes(service)
                .into_iter()
                .filter(|(_, target)| *target == data_dir)
                .map(|(source, _)| source)
                .collect();
            assert_eq!(at_data.len(), 1, "{file}: {name}: no volume at {data_dir}");
            let source = at_data[0].clone();
            assert!(
                declared.contains_key(&source),
                "{file}: {name}: {source} is not a named volume"
            );
            assert!(
                sources.insert(source.clone()),
                "{file}: {name} shares volume {source}"
            );

            // The URL the others reach it at: its in-network name and its container port.
            let url = value("CART_ADVERTISED_URL")
                .unwrap_or_else(|| panic!("{file}: {name} sets no CART_ADVERTISED_URL"));
            assert_eq!(url, format!("http://{name}:{port}"), "{file}: {name}");
            assert!(urls.insert(url.clone()), "{file}: {name} advertises {url}");

            for published in published_ports(service) {
                assert!(
                    host_ports.insert(published.published.clone()),
                    "{file}: {name} publishes host port {} again",
                    published.published
                );
            }
            groups.insert(value("CART_GROUP_ID"));
        }
        assert_eq!(
            host_ports,
            BTreeSet::from(["8000".to_string(), "8010".to_string()]),
            "{file}: CartService's host ports (the launcher's 8000 and 8010)"
        );
        assert_eq!(groups.len(), 1, "{file}: replicas in groups {groups:?}");

        for (name, service) in &replicas[1..] {
            assert_eq!(
                without_per_replica_settings(service),
                without_per_replica_settings(first),
                "{file}: {name} differs from {first_name} beyond ports, volumes and \
                 CART_ADVERTISED_URL"
            );
        }
    }
}
