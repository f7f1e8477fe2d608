//! The command line: `--check-config` lists every problem with its path and exits
//! non-zero before binding anything; a valid file exits 0.

use std::process::Command;

fn check(toml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(&f, toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sse-bridge"))
        .arg("--check-config")
        .arg(&f)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn check_config_lists_every_problem() {
    let (code, text) = check(
        r#"
[server]
heartbeat_interval = "10ms"
[[routes]]
name = "ok"
source = { type = "kafka", brokers = ["localhost:9092"], topics = ["a"] }
[[routes]]
name = "ok"
source = { type = "kafka", brokers = ["nope"], topics = [] }
"#,
    );
    assert_eq!(code, 2, "{text}");
    for want in [
        "server.heartbeat_interval: must be at least 100ms",
        "routes[1].name: duplicate route name `ok`",
        "routes[1].source.brokers[0]: must be `host:port`",
        "routes[1].source.topics: must not be empty",
        "routes[1].path: duplicate path `/streams/ok`",
    ] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
}

#[test]
fn check_config_accepts_the_shipped_examples() {
    for f in ["config/example.toml", "config/demo.toml"] {
        let out = Command::new(env!("CARGO_BIN_EXE_sse-bridge"))
            .arg("--check-config")
            .arg(f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn running_with_an_invalid_config_exits_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(
        &f,
        "[[routes]]\nname = \"\"\nsource = { type = \"kafka\", brokers = [], topics = [] }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sse-bridge"))
        .arg("--config")
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("routes[0].name") && text.contains("routes[0].source.topics"),
        "{text}"
    );
}

#[test]
fn environment_overrides_set_routes_by_name_and_refuse_unknown_routes() {
    let run = |vars: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sse-bridge"));
        c.arg("--check-config").arg("config/example.toml");
        for (k, v) in vars {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = run(&[
        ("SSE_BRIDGE__ROUTES__orders__MAX_CONNECTIONS", "5"),
        (
            "SSE_BRIDGE__ROUTES__orders__SOURCE__BROKERS",
            "a:9092,b:9092",
        ),
        (
            "SSE_BRIDGE__SERVER__CORS_ORIGINS",
            "https://a.example,https://b.example",
        ),
        ("SSE_BRIDGE__SERVER__LISTEN", "127.0.0.1:9000"),
    ]);
    assert_eq!(code, 0, "{out}");
    // A value of the wrong type is a problem named by its field.
    let (code, out) = run(&[("SSE_BRIDGE__ROUTES__orders__MAX_CONNECTIONS", "lots")]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("SSE_BRIDGE__ROUTES__orders__MAX_CONNECTIONS"),
        "{out}"
    );
    assert!(out.contains("must be a number"), "{out}");
    // A route that does not exist is an error saying so.
    let (code, out) = run(&[("SSE_BRIDGE__ROUTES__ordres__MAX_CONNECTIONS", "5")]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(
            "names route `ordres`, which is not configured (routes: orders, inventory, shipments, payments)"
        ),
        "{out}"
    );
    // Validation still applies to overridden values, with the field's path.
    let (code, out) = run(&[("SSE_BRIDGE__ROUTES__orders__SOURCE__TOPICS", "")]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("routes[0].source.topics"), "{out}");
}

#[test]
fn version_prints_the_build_and_the_librdkafka_features() {
    let out = Command::new(env!("CARGO_BIN_EXE_sse-bridge"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!(
            "sse-bridge {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    let features = text
        .split("builtin.features: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no builtin.features in {text}"));
    for f in sse_bridge::source::kafka::REQUIRED_FEATURES {
        assert!(
            features.split([',', ')']).any(|x| x.trim() == *f),
            "{f} missing from {text}"
        );
    }
}
