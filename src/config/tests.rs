use std::collections::HashMap;
use std::io::Write;

use super::*;

fn load(toml: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(toml.as_bytes()).unwrap();
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::load_with_env(f.path(), Some(env))
}

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:9090"
heartbeat_interval = "5s"

[[routes]]
name = "orders"
source = { type = "kafka", brokers = ["localhost:9092"], topics = ["orders"], properties = { "security.protocol" = "SASL_SSL", "sasl.password" = "hunter2" } }
start = { last = 10 }
payload = "envelope"
event_name = { header = "type" }
"#;

#[test]
fn loads_and_defaults() {
    let s = load(GOOD, &[]).unwrap();
    assert_eq!(s.server.heartbeat_interval, Duration::from_secs(5));
    assert_eq!(s.server.retry, Duration::from_secs(2));
    let r = &s.routes[0];
    assert_eq!(r.path(), "/streams/orders");
    assert_eq!(r.start, StartPosition::Last(10));
    assert_eq!(r.payload.as_deref(), Some("envelope"));
    assert_eq!(r.event_name.header.as_deref(), Some("type"));
    assert_eq!(r.source.kind(), "kafka");
    let k = r
        .source
        .downcast::<crate::source::kafka::KafkaSourceConfig>()
        .expect("kafka");
    assert_eq!(
        k.properties.0.get("security.protocol").map(String::as_str),
        Some("SASL_SSL")
    );
    let dbg = format!("{:?}", k);
    assert!(!dbg.contains("hunter2"), "secret leaked in {dbg}");
}

#[test]
fn env_overrides_file() {
    let s = load(
        GOOD,
        &[
            ("SSE_BRIDGE__SERVER__LISTEN", "127.0.0.1:7000"),
            ("SSE_BRIDGE__SERVER__LOG_FORMAT", "json"),
        ],
    )
    .unwrap();
    assert_eq!(s.server.listen.port(), 7000);
    assert_eq!(s.server.log_format, LogFormat::Json);
}

#[test]
fn reports_every_problem_with_its_path() {
    let bad = r#"
[server]
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:8080"
cors_origins = ["https://ok.example", "ftp://nope/"]

[[routes]]
name = "a b"
source = { type = "kafka", brokers = [], topics = ["ok"] }

[[routes]]
name = "second"
source = { type = "kafka", brokers = ["h:1"], topics = [], properties = { "group.id" = "x" } }
event_name = { default = "" }
"#;
    let e = load(bad, &[]).unwrap_err();
    let got: Vec<String> = e.problems.iter().map(|p| p.path.clone()).collect();
    for want in [
        "server.admin_listen",
        "server.cors_origins[1]",
        "routes[0].name",
        "routes[0].source.brokers",
        "routes[1].source.topics",
        "routes[1].source.properties.\"group.id\"",
        "routes[1].event_name.default",
    ] {
        assert!(got.iter().any(|g| g == want), "missing {want} in {got:?}");
    }
    assert!(e
        .to_string()
        .contains("routes[1].source.topics: must not be empty"));
}

#[test]
fn the_console_and_client_paths_are_reserved() {
    for (path, says) in [
        ("/console/x", "the console's"),
        ("/client", "JavaScript client"),
        ("/client/sse-bridge-client.js", "JavaScript client"),
    ] {
        let toml = format!("[[routes]]\nname=\"a\"\npath=\"{path}\"\nsource={{type=\"kafka\",brokers=[\"h:1\"],topics=[\"t\"]}}\n");
        let e = load(&toml, &[]).unwrap_err();
        assert_eq!(e.problems[0].path, "routes[0].path", "{e}");
        assert!(e.problems[0].message.contains(says), "{e}");
    }
    assert!(load("[[routes]]\nname=\"a\"\npath=\"/clients\"\nsource={type=\"kafka\",brokers=[\"h:1\"],topics=[\"t\"]}\n", &[]).is_ok());
}

#[test]
fn unknown_fields_and_types_are_errors() {
    let e = load("[server]\nlisten = \"127.0.0.1:1\"\nbogus = 1\n[[routes]]\nname=\"a\"\nsource={type=\"kafka\",brokers=[\"h:1\"],topics=[\"t\"]}\n", &[]).unwrap_err();
    assert!(e.to_string().contains("bogus"), "{e}");
    let e = load("[[routes]]\nname=\"a\"\nsource={type=\"pulsar\"}\n", &[]).unwrap_err();
    assert!(e.to_string().contains("pulsar"), "{e}");
}

#[test]
fn missing_file_is_an_error() {
    let e = Settings::load(std::path::Path::new("/nonexistent/x.toml")).unwrap_err();
    assert!(e.to_string().contains("does not exist"));
}

#[test]
fn mongodb_routes_are_validated() {
    let bad = r#"
[[routes]]
name = "m"
start = "earliest"
payload = "value"
event_name = { header = "type" }
source = { type = "mongodb", uri = "http://nope", collection = "c", pipeline = [ { "$match" = {}, "$project" = {} }, 5 ] }
"#;
    let e = load(bad, &[]).unwrap_err();
    let got: Vec<String> = e.problems.iter().map(|p| p.path.clone()).collect();
    for want in [
        "routes[0].payload",
        "routes[0].source.uri",
        "routes[0].source.database",
        "routes[0].source.pipeline[0]",
        "routes[0].source.pipeline[1]",
        "routes[0].event_name.header",
        "routes[0].start",
    ] {
        assert!(got.iter().any(|g| g == want), "missing {want} in {got:?}");
    }
    let good = r#"
[[routes]]
name = "m"
source = { type = "mongodb", uri = "mongodb://u:secret@h:1/?replicaSet=rs", database = "d", full_document = "updateLookup" }
"#;
    let s = load(good, &[]).unwrap();
    assert_eq!(s.routes[0].source.kind(), "mongodb");
    assert_eq!(s.routes[0].payload, None, "the source's default payload");
    assert!(
        !format!("{:?}", s.routes[0].source).contains("secret"),
        "credentials never printed"
    );
}

fn problems_of(toml: &str, env: &[(&str, &str)]) -> Vec<String> {
    match load(toml, env) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
    }
}

const SECRET: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn access_settings_are_checked_with_their_paths() {
    let toml = format!(
        r#"
[server]
client_ip_header = "x-forwarded-for"
max_connection_age = "0s"

[[routes]]
name = "a"
source = {{ type = "kafka", brokers = ["b:9092"], topics = ["t"] }}
filters = [{{ on = "key", claim = "sub" }}]
cors_origins = ["*"]
cors_credentials = true

[[routes]]
name = "b"
source = {{ type = "mongodb", uri = "mongodb://h/?replicaSet=r", database = "d" }}
client_filters = ["key", "field:fullDocument.owner"]
auth = {{ type = "jwt", algorithm = "HS256", secret_env = "NO_SUCH_VAR_FOR_TEST" }}

[[routes]]
name = "c"
source = {{ type = "kafka", brokers = ["b:9092"], topics = ["t"] }}
auth = {{ type = "jwt", algorithm = "RS256", secret = "{SECRET}" }}
"#
    );
    let p = problems_of(&toml, &[]);
    let has = |path: &str| p.iter().any(|x| x.starts_with(path));
    assert!(has("server.client_ip_header"), "{p:?}");
    assert!(has("server.max_connection_age"), "{p:?}");
    assert!(has("routes[0].filters"), "filters need auth: {p:?}");
    assert!(has("routes[0].cors_credentials"), "{p:?}");
    assert!(
        has("routes[1].client_filters"),
        "key on a mongodb route: {p:?}"
    );
    assert!(has("routes[1].auth.secret_env"), "{p:?}");
    assert!(has("routes[2].auth.secret"), "{p:?}");
    assert_eq!(p.len(), 7, "{p:?}");
}

#[test]
fn jwt_secrets_load_and_never_print() {
    let toml = format!(
        r#"
[server]
trusted_proxies = ["10.0.0.0/8", "192.168.1.1", "not-a-net"]
[[routes]]
name = "a"
source = {{ type = "kafka", brokers = ["b:9092"], topics = ["t"] }}
auth = {{ type = "jwt", algorithm = "HS256", secret = "{SECRET}" }}
filters = [{{ on = "key", claim = "sub" }}]
client_filters = ["header:region", "event"]
"#
    );
    let p = problems_of(&toml, &[]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("server.trusted_proxies[2]"));
    let ok = load(&toml.replace(", \"not-a-net\"", ""), &[]).unwrap();
    let dbg = format!("{:?}", ok.routes[0].auth);
    assert!(!dbg.contains(SECRET), "secret leaked in {dbg}");
    assert_eq!(
        ok.routes[0].selectors(),
        vec![
            Selector::Key,
            Selector::Header("region".into()),
            Selector::Event
        ]
    );
    let short = toml.replace(SECRET, "short");
    assert!(problems_of(&short.replace(", \"not-a-net\"", ""), &[])[0]
        .starts_with("routes[0].auth.secret"));
    assert!(problems_of(&toml.replace("\"event\"", "\"header:\""), &[])
        .iter()
        .any(|p| p.contains("header:")));
}

#[test]
fn memory_budgets_default_from_the_readers_and_replay_buffers_and_are_checked() {
    let s = load(GOOD, &[]).unwrap();
    let c = &s.server.catchup;
    let route = c.reader_bytes() * c.max_readers_per_route + s.routes[0].replay.max_bytes;
    assert_eq!(s.routes[0].memory_budget(c), route);
    assert_eq!(
        s.memory_budget(),
        c.budget_bytes() + s.routes[0].replay.max_bytes
    );
    assert_eq!(s.memory_budget(), 16 * 16 * 1024 * 1024 + 64 * 1024 * 1024);
    let small = GOOD
        .replace(
            "heartbeat_interval = \"5s\"",
            "heartbeat_interval = \"5s\"\nmemory_budget = 1000",
        )
        .replace(
            "start = { last = 10 }",
            "start = { last = 10 }\nmemory_budget = 1000",
        );
    let problems = problems_of(&small, &[]);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("server.memory_budget: must hold at least one catch-up reader")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("routes[0].memory_budget: must hold at least one")),
        "{problems:?}"
    );
}

#[test]
fn route_overrides_by_name_reach_the_settings() {
    let s = load(
        GOOD,
        &[
            ("SSE_BRIDGE__ROUTES__orders__MAX_CONNECTIONS", "5"),
            (
                "SSE_BRIDGE__ROUTES__orders__SOURCE__BROKERS",
                "a:9092,b:9092",
            ),
            ("SSE_BRIDGE__ROUTES__orders__START", "latest"),
            ("SSE_BRIDGE__SERVER__CORS_ORIGINS", "https://a.example"),
        ],
    )
    .unwrap();
    let r = &s.routes[0];
    assert_eq!(r.max_connections, 5);
    assert_eq!(r.start, StartPosition::Latest);
    let k = r
        .source
        .downcast::<crate::source::kafka::KafkaSourceConfig>()
        .expect("kafka");
    assert_eq!(k.brokers, ["a:9092", "b:9092"]);
    assert_eq!(s.server.cors_origins, ["https://a.example"]);
    assert_eq!(
        s.raw_routes[0]["max_connections"], 5,
        "reload compares what runs"
    );
}

#[test]
fn value_format_applies_to_envelopes_only() {
    let envelope = GOOD.replace(
        "\"sasl.password\" = \"hunter2\" } }",
        "\"sasl.password\" = \"hunter2\" }, value_format = \"json\" }",
    );
    assert!(load(&envelope, &[]).is_ok(), "envelope route: accepted");
    let plain = envelope.replace("payload = \"envelope\"", "payload = \"value\"");
    let problems = problems_of(&plain, &[]);
    assert!(
        problems.iter().any(|p| p.starts_with(
            "routes[0].source.value_format: applies to `payload = \"envelope\"` only"
        )),
        "{problems:?}"
    );
}
