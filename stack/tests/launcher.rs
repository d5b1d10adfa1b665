//! The README's first command as a user meets it: `stack up` brings the whole stack up, the URLs
//! it prints answer, a second launcher on the same ports is refused with a clear message, Ctrl-C
//! stops every process, and the next `up` finds the data. That stack runs two CartService
//! instances (`--cart-instances 2`, through its variable), each on its own port and data folder.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{curl, port_is_free, run_bounded, Launched, Ports, Reply};

/// `up` with two CartService instances.
const TWO_CARTS: [(&str, &str); 1] = [("STACK_CART_INSTANCES", "2")];

fn create_order(ports: Ports) -> Reply {
    curl(&[
        "-X",
        "POST",
        &format!("{}/api/create-order", ports.cart_url()),
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"orderId": "LAUNCHER-1", "numItems": 2}"#,
    ])
}

/// Both CartService instances are ready, each on its port, under its name, with its data.
fn assert_two_carts_ready(stack: &Launched, data: &Path) {
    for (instance, name, dir) in [
        (0, "cart-service", "cart-service"),
        (1, "cart-service-1", "cart-service-1"),
    ] {
        let url = stack.ports.cart_instance_url(instance);
        let ready = curl(&[&format!("{url}/ready")]);
        assert_eq!(ready.status, 200, "{name} /ready: {}", ready.body);
        assert!(
            stack.output_contains(&format!("stack: {name} is ready")),
            "{name}"
        );
        assert!(
            std::fs::read_dir(data.join(dir)).unwrap().next().is_some(),
            "{name} keeps nothing in {dir}"
        );
    }
    // The second instance's log lines carry its name.
    assert!(
        stack.output_contains("cart-service-1 | "),
        "no cart-service-1 log"
    );
    assert!(stack.pid_of("cart-service") != stack.pid_of("cart-service-1"));
}

#[test]
fn up_prints_working_urls_stops_on_ctrl_c_and_finds_its_data_again() {
    let data = tempfile::tempdir().unwrap();
    let stack = Launched::up_with(Ports::free(), data.path(), &TWO_CARTS);
    let ports = stack.ports;
    assert_two_carts_ready(&stack, data.path());
    let carts: Vec<u32> = ["cart-service", "cart-service-1"]
        .iter()
        .map(|name| stack.pid_of(name).unwrap())
        .collect();

    // Every URL the launcher printed answers.
    let printed: Vec<String> = stack
        .output()
        .iter()
        .filter_map(|line| line.split_whitespace().find(|w| w.starts_with("http://")))
        .map(str::to_string)
        .collect();
    for expected in [
        format!("{}/docs", ports.cart_url()),
        format!("{}/docs", ports.cart_instance_url(1)),
        format!("{}/docs", ports.order_url()),
        format!("{}/ui", ports.registry_url()),
    ] {
        assert!(printed.contains(&expected), "{expected} not in {printed:?}");
    }
    for url in &printed {
        let reply = curl(&["-L", url]);
        assert_eq!(reply.status, 200, "{url}: {}", reply.body);
    }
    assert!(stack.output_contains(&format!("127.0.0.1:{}", ports.broker)));

    // The embedded default broker is Nisshi, and the launcher says so.
    assert!(stack.output_contains("Kafka broker (Nisshi)"));

    // An order through the launched stack.
    let created = create_order(ports);
    assert_eq!(created.status, 201, "{}", created.body);
    let total = created.json()["totalAmount"].clone();
    let details = curl(&[&format!(
        "{}/api/order-details?orderId=LAUNCHER-1&waitMs=10000",
        ports.order_url()
    )]);
    assert_eq!(details.status, 200, "{}", details.body);
    assert_eq!(details.json()["totalAmount"], total);

    // A second launcher on the same ports is refused before it starts anything.
    let second = common::launcher(ports, data.path()).output().unwrap();
    assert!(!second.status.success());
    let message = String::from_utf8_lossy(&second.stderr);
    assert!(
        message.contains(&format!(
            "port {} for broker is already in use",
            ports.broker
        )),
        "{message}"
    );

    // Ctrl-C stops all five (both CartService instances) and frees every port.
    let status = stack.stop();
    assert!(status.success(), "the launcher exited with {status}");
    for port in [
        ports.broker,
        ports.registry,
        ports.cart,
        ports.cart_instance(1),
        ports.order,
    ] {
        assert!(port_is_free(port), "port {port} still taken after Ctrl-C");
    }
    for pid in carts {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "CartService (pid {pid}) still runs after Ctrl-C"
        );
    }

    // The next start finds the data: the registry's schema, CartService's orders (409 for the
    // same ID) and OrderService's view.
    let again = Launched::up_with(ports, data.path(), &TWO_CARTS);
    assert_two_carts_ready(&again, data.path());
    let subjects = curl(&[&format!("{}/subjects", ports.registry_url())]);
    assert!(
        subjects.body.contains("order-events-value"),
        "{}",
        subjects.body
    );
    let duplicate = create_order(ports);
    assert_eq!(duplicate.status, 409, "{}", duplicate.body);
    let details = curl(&[&format!(
        "{}/api/order-details?orderId=LAUNCHER-1",
        ports.order_url()
    )]);
    assert_eq!(details.status, 200, "{}", details.body);
    assert_eq!(details.json()["totalAmount"], total);
    assert!(again.stop().success());
}

/// The three services as one family (issue #14): the same `/health`, `/ready` shape, `/metrics`,
/// `/docs` redirect and request-ID echo, checked on each as a user reaches it.
#[test]
fn the_three_services_share_one_surface() {
    let data = tempfile::tempdir().unwrap();
    let stack = Launched::up(data.path());
    let ports = stack.ports;
    for (service, url, docs) in [
        ("cart-service", ports.cart_url(), "/docs/"),
        ("order-service", ports.order_url(), "/docs/"),
        ("schema-registry", ports.registry_url(), "/ui"),
    ] {
        let health = curl(&[&format!("{url}/health")]);
        assert_eq!(health.status, 200, "{service} /health");
        assert_eq!(
            health.json(),
            serde_json::json!({"status": "alive"}),
            "{service}"
        );

        let ready = curl(&[&format!("{url}/ready")]);
        assert_eq!(ready.status, 200, "{service} /ready: {}", ready.body);
        let body = ready.json();
        assert_eq!(body["status"], "ready", "{service}: {body}");
        let checks = body["checks"]
            .as_array()
            .unwrap_or_else(|| panic!("{service}: {body}"));
        assert!(!checks.is_empty(), "{service}: no checks");
        for check in checks {
            let name = check["name"].as_str().unwrap();
            assert!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{service}: check name {name:?}"
            );
            assert_eq!(check["state"], "ok", "{service}: {check}");
        }

        let metrics = curl(&[&format!("{url}/metrics")]);
        assert_eq!(metrics.status, 200, "{service} /metrics");
        assert!(
            metrics.body.contains("http_requests_total{"),
            "{service} /metrics has no HTTP metrics"
        );

        let redirect = curl(&["-D", "-", &format!("{url}/docs")]);
        assert_eq!(redirect.status, 308, "{service} /docs");
        let location = redirect
            .body
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("location:")
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_default();
        assert_eq!(location, docs, "{service} /docs redirects to {location:?}");
        let followed = curl(&["-L", &format!("{url}/docs")]);
        assert_eq!(followed.status, 200, "{service} {docs}");

        let echoed = curl(&[
            "-D",
            "-",
            "-H",
            "X-Request-Id: family-check-1",
            &format!("{url}/health"),
        ]);
        assert!(
            echoed
                .body
                .to_ascii_lowercase()
                .contains("x-request-id: family-check-1"),
            "{service} does not echo X-Request-Id: {}",
            echoed.body
        );
    }
    assert!(
        stack.output_contains("GET /health 200"),
        "no access log line"
    );
}

/// `--cart-instances` is bounded, and an instance's port must exist and be the stack's only
/// user of it; each mistake is refused before anything starts.
#[test]
fn cart_instances_are_refused_out_of_bounds() {
    let data = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let cases: [(&[&str], String); 4] = [
        (&["--cart-instances", "0"], "0 is not in 1..=16".to_string()),
        (
            &["--cart-instances", "17"],
            "17 is not in 1..=16".to_string(),
        ),
        (
            &["--cart-port", "65530", "--cart-instances", "2"],
            "CartService instance 1 would listen on --cart-port 65530 + 10, beyond port 65535"
                .to_string(),
        ),
        (
            &[
                "--cart-port",
                "20000",
                "--order-port",
                "20011",
                "--cart-instances",
                "3",
            ],
            "port 20011 would be used by both cart-service-2 and order-service".to_string(),
        ),
    ];
    for (args, expected) in cases {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_stack"));
        command
            .arg("up")
            .arg("--bin-dir")
            .arg(common::bin_dir())
            .arg("--data-dir")
            .arg(data.path())
            .args(["--broker-port", &ports.broker.to_string()])
            .args(["--registry-port", &ports.registry.to_string()])
            .args(args);
        let finished = run_bounded(&mut command, Duration::from_secs(30));
        let status = finished.status.expect("the launcher did not exit in 30 s");
        assert!(!status.success(), "{args:?} accepted");
        assert!(
            finished.stderr.contains(&expected),
            "{args:?}: {}",
            finished.stderr
        );
    }
    assert!(
        std::fs::read_dir(data.path()).unwrap().next().is_none(),
        "a refused launcher created data"
    );
}
