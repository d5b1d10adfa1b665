//! QUICK_START.md, executed: every `sh` block is run as written (only the ports are moved to the
//! test's own) against a stack started by the real launcher, and its output is compared with the
//! `json` or `text` block that follows it in the page. Docs nobody runs rot; this one is run.
//!
//! How the page is read:
//! - The first command must be the README's `cargo run -p stack -- up`; the test runs the same
//!   launcher (on free ports, a fresh data folder, the debug binaries).
//! - Every other `sh` block must be followed by the answer it gives. A `json` answer is compared
//!   as JSON: same keys, same values, arrays in any order. Keys listed in an HTML comment
//!   `<!-- varies: key … -->` just before the answer only have to be present (generated IDs,
//!   timestamps). A string containing `…` matches any string with the other parts in order.
//!   A `text` answer is compared line by line after trimming, with the same `…` rule.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{Launched, Ports};
use serde_json::Value;

const PAGE: &str = "QUICK_START.md";
const START: &str = "cargo run -p stack -- up";

/// One fenced block of the page.
#[derive(Debug)]
struct Block {
    lang: String,
    body: String,
    /// The 1-based line of the opening fence, for messages.
    line: usize,
    /// Keys from a `<!-- varies: … -->` comment right before the block.
    varies: BTreeSet<String>,
}

fn blocks(page: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut varies = BTreeSet::new();
    let mut open: Option<Block> = None;
    for (index, line) in page.lines().enumerate() {
        if let Some(block) = open.as_mut() {
            if line.trim_start().starts_with("```") {
                blocks.push(open.take().unwrap());
            } else {
                block.body.push_str(line);
                block.body.push('\n');
            }
        } else if let Some(lang) = line.trim_start().strip_prefix("```") {
            open = Some(Block {
                lang: lang.trim().to_string(),
                body: String::new(),
                line: index + 1,
                varies: std::mem::take(&mut varies),
            });
        } else if let Some(keys) = line
            .trim()
            .strip_prefix("<!-- varies:")
            .and_then(|rest| rest.strip_suffix("-->"))
        {
            varies = keys.split_whitespace().map(str::to_string).collect();
        } else if !line.trim().is_empty() {
            // A comment applies only to the block right after it.
            varies.clear();
        }
    }
    assert!(open.is_none(), "{PAGE}: a code block is never closed");
    blocks
}

/// `text` matches `pattern`, where each `…` in the pattern stands for any text.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, rest) = parts.split_first().unwrap();
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let (last, middle) = rest.split_last().unwrap();
    for part in middle {
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.ends_with(last)
}

/// Why `actual` does not match `expected`, or `None` when it does.
fn mismatch(
    expected: &Value,
    actual: &Value,
    varies: &BTreeSet<String>,
    path: &str,
) -> Option<String> {
    match (expected, actual) {
        (Value::String(e), _) if e == "…" => None,
        (Value::String(e), Value::String(a)) if e.contains('…') => {
            (!glob(e, a)).then(|| format!("{path}: {a:?} does not match {e:?}"))
        }
        (Value::Object(e), Value::Object(a)) => {
            let expected_keys: BTreeSet<&String> = e.keys().collect();
            let actual_keys: BTreeSet<&String> = a.keys().collect();
            if expected_keys != actual_keys {
                return Some(format!(
                    "{path}: keys {actual_keys:?}, the page shows {expected_keys:?}"
                ));
            }
            e.iter().find_map(|(key, value)| {
                if varies.contains(key) {
                    None
                } else {
                    mismatch(value, &a[key], varies, &format!("{path}.{key}"))
                }
            })
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Some(format!(
                    "{path}: {} elements, the page shows {}",
                    a.len(),
                    e.len()
                ));
            }
            // In any order: each shown element must match a distinct actual one.
            let mut unused: Vec<&Value> = a.iter().collect();
            for (i, want) in e.iter().enumerate() {
                let at = unused
                    .iter()
                    .position(|got| mismatch(want, got, varies, path).is_none());
                match at {
                    Some(at) => {
                        unused.remove(at);
                    }
                    None => return Some(format!("{path}[{i}]: {want} is not in {actual}")),
                }
            }
            None
        }
        _ => {
            (expected != actual).then(|| format!("{path}: got {actual}, the page shows {expected}"))
        }
    }
}

/// The page's default ports, moved to the test stack's.
fn localize(command: &str, ports: Ports) -> String {
    command
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{}", ports.cart))
        .replace("127.0.0.1:8001", &format!("127.0.0.1:{}", ports.order))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{}", ports.registry))
        .replace("127.0.0.1:9092", &format!("127.0.0.1:{}", ports.broker))
}

fn check(command: &Block, answer: &Block, stdout: &str) -> Result<(), String> {
    let at = format!("{PAGE}:{} ({})", command.line, command.body.trim());
    match answer.lang.as_str() {
        "json" => {
            let expected: Value = serde_json::from_str(&answer.body).map_err(|e| {
                format!("{PAGE}:{}: the answer shown is not JSON: {e}", answer.line)
            })?;
            let actual: Value = serde_json::from_str(stdout)
                .map_err(|e| format!("{at}: printed {stdout:?}, not JSON: {e}"))?;
            match mismatch(&expected, &actual, &answer.varies, "$") {
                None => Ok(()),
                Some(why) => Err(format!("{at}: {why}\nfull answer: {actual}")),
            }
        }
        "text" => {
            let expected: Vec<&str> = answer.body.trim().lines().map(str::trim).collect();
            let actual: Vec<&str> = stdout.trim().lines().map(str::trim).collect();
            let same = expected.len() == actual.len()
                && expected.iter().zip(&actual).all(|(e, a)| glob(e, a));
            if same {
                Ok(())
            } else {
                Err(format!(
                    "{at}: printed {actual:?}, the page shows {expected:?}"
                ))
            }
        }
        other => Err(format!(
            "{PAGE}:{}: the block after a command must be `json` or `text`, not `{other}`",
            answer.line
        )),
    }
}

#[test]
fn every_quick_start_command_answers_as_the_page_shows() {
    let root = testkit::workspace_root();
    let page = std::fs::read_to_string(root.join(PAGE)).unwrap();
    let blocks = blocks(&page);
    let commands: Vec<usize> = (0..blocks.len())
        .filter(|&i| blocks[i].lang == "sh")
        .collect();
    assert!(
        commands.len() >= 15,
        "{PAGE} has only {} commands; the page must cover the whole tour",
        commands.len()
    );
    let first = &blocks[commands[0]];
    assert_eq!(
        first.body.trim(),
        START,
        "{PAGE}:{}: the first command must start the stack",
        first.line
    );

    let data = tempfile::tempdir().unwrap();
    let stack = Launched::up(data.path());
    let mut failures = Vec::new();
    for &i in &commands[1..] {
        let command = &blocks[i];
        assert_ne!(
            command.body.trim(),
            START,
            "{PAGE}:{}: started twice",
            command.line
        );
        let answer = blocks
            .get(i + 1)
            .filter(|b| b.lang != "sh")
            .unwrap_or_else(|| panic!("{PAGE}:{}: a command without its answer", command.line));
        let output = Command::new("bash")
            .args(["-e", "-o", "pipefail", "-c"])
            .arg(localize(&command.body, stack.ports))
            .current_dir(&root)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            failures.push(format!(
                "{PAGE}:{}: exited with {}: {}",
                command.line,
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
            continue;
        }
        if let Err(why) = check(command, answer, &stdout) {
            failures.push(why);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} commands did not answer as {PAGE} shows:\n\n{}",
        failures.len(),
        commands.len() - 1,
        failures.join("\n\n")
    );
    assert!(stack.stop().success());
}

#[test]
fn the_matcher_rejects_what_differs() {
    let none = BTreeSet::new();
    let varies: BTreeSet<String> = ["id".to_string()].into();
    let m = |e: &str, a: &str, v: &BTreeSet<String>| {
        mismatch(
            &serde_json::from_str(e).unwrap(),
            &serde_json::from_str(a).unwrap(),
            v,
            "$",
        )
    };
    assert!(m(r#"{"a": 1}"#, r#"{"a": 1}"#, &none).is_none());
    assert!(m(r#"{"a": 1}"#, r#"{"a": 2}"#, &none).is_some());
    assert!(m(r#"{"a": 1}"#, r#"{"a": 1, "b": 2}"#, &none).is_some());
    assert!(m(r#"{"id": "x"}"#, r#"{"id": "y"}"#, &varies).is_none());
    assert!(m(r#"{"id": "x"}"#, r#"{}"#, &varies).is_some());
    assert!(m(r#"[1, 2]"#, r#"[2, 1]"#, &none).is_none());
    assert!(m(r#"[1, 1]"#, r#"[1, 2]"#, &none).is_some());
    assert!(m(r#"0.85"#, r#"0.86"#, &none).is_some());
    assert!(m(r#""ab…yz""#, r#""abcdxyz""#, &none).is_none());
    assert!(m(r#""ab…yz""#, r#""abcdxy""#, &none).is_some());
    assert!(glob("a…b…c", "a-b-c"));
    assert!(!glob("a…b…c", "a-c-b"));
}
