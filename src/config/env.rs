//! Environment overrides: `SSE_BRIDGE__<SECTION>__<KEY>[__<KEY>...]=value` sets a field
//! (e.g. `SSE_BRIDGE__SERVER__LISTEN=0.0.0.0:9000`), and routes are found by name:
//! `SSE_BRIDGE__ROUTES__<name>__<field>[__<field>...]=value` sets a field of the route
//! named `<name>` (matched exactly, else ignoring case when that picks one route), e.g.
//! `SSE_BRIDGE__ROUTES__orders__SOURCE__BROKERS=a:9092,b:9092` or
//! `SSE_BRIDGE__ROUTES__orders__MAX_CONNECTIONS=500`. Field names ignore case. The value
//! takes the type of the field it replaces: a list takes a comma-separated list (or a
//! JSON array), a number or boolean its text; a value for a field the file does not set
//! is read as JSON when it is a JSON number, boolean, array or object, else as text. An
//! override naming no route is an error that names the variable. Names of keys ignore
//! case; a key with dots (a librdkafka property) is one key, not a path.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::ENV_PREFIX;
use crate::problems::{ConfigError, Problem};

/// The override variables among `env`, sorted (so the same environment always gives
/// the same result).
pub fn overrides(env: HashMap<String, String>) -> Vec<(String, String)> {
    let prefix = format!("{ENV_PREFIX}__");
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.len() > prefix.len() && k[..prefix.len()].eq_ignore_ascii_case(&prefix))
        .collect();
    vars.sort();
    vars
}

/// One override applied: where it went (as deserialization errors name fields, e.g.
/// `routes[0].source.brokers`) and its text.
pub struct Applied {
    at: String,
    keys: Vec<String>,
    text: String,
}

/// Apply the overrides `vars` to the loaded `tree`.
pub fn apply(tree: &mut Value, vars: &[(String, String)]) -> Result<Vec<Applied>, ConfigError> {
    let prefix_len = format!("{ENV_PREFIX}__").len();
    let mut problems = Vec::new();
    let mut applied = Vec::new();
    for (var, value) in vars {
        let rest = &var[prefix_len..];
        let mut parts = rest.split("__");
        let section = parts.next().unwrap_or_default();
        if !section.eq_ignore_ascii_case("routes") {
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            if path.iter().any(String::is_empty) {
                problems.push((
                    var.clone(),
                    "names no field: use SSE_BRIDGE__<SECTION>__<KEY>".to_owned(),
                ));
            } else {
                match set(tree, &path, value) {
                    Ok(keys) => applied.push(Applied {
                        at: keys.join("."),
                        keys,
                        text: value.clone(),
                    }),
                    Err(e) => problems.push((var.clone(), e)),
                }
            }
            continue;
        }
        let name = parts.next().unwrap_or_default();
        let path: Vec<String> = parts.map(str::to_ascii_lowercase).collect();
        if path.is_empty() || path.iter().any(String::is_empty) {
            problems.push((
                var.clone(),
                "names no field: use SSE_BRIDGE__ROUTES__<route name>__<field>[__<field>...]"
                    .to_owned(),
            ));
            continue;
        }
        let Some(routes) = tree.get_mut("routes").and_then(Value::as_array_mut) else {
            problems.push((
                var.clone(),
                format!("names route `{name}`, but no routes are configured"),
            ));
            continue;
        };
        let Some(i) = find(routes, name) else {
            let known: Vec<&str> = routes
                .iter()
                .filter_map(|r| r.get("name").and_then(Value::as_str))
                .collect();
            problems.push((
                var.clone(),
                format!(
                    "names route `{name}`, which is not configured (routes: {})",
                    known.join(", ")
                ),
            ));
            continue;
        };
        if path == ["name"] {
            problems.push((
                var.clone(),
                "cannot rename a route (the name is how overrides find it)".to_owned(),
            ));
            continue;
        }
        match set(&mut routes[i], &path, value) {
            Ok(keys) => applied.push(Applied {
                at: format!("routes[{i}].{}", keys.join(".")),
                keys: ["routes".to_owned(), i.to_string()]
                    .into_iter()
                    .chain(keys)
                    .collect(),
                text: value.clone(),
            }),
            Err(e) => problems.push((var.clone(), e)),
        }
    }
    if problems.is_empty() {
        Ok(applied)
    } else {
        Err(ConfigError {
            problems: problems
                .into_iter()
                .map(|(path, message)| Problem { path, message })
                .collect(),
        })
    }
}

/// The index of the route named `name`: exactly, else the one route whose name matches
/// ignoring case.
fn find(routes: &[Value], name: &str) -> Option<usize> {
    let name_of = |r: &Value| r.get("name").and_then(Value::as_str).map(str::to_owned);
    let exact = routes
        .iter()
        .position(|r| name_of(r).as_deref() == Some(name));
    exact.or_else(|| {
        let mut loose = routes
            .iter()
            .enumerate()
            .filter(|(_, r)| name_of(r).is_some_and(|n| n.eq_ignore_ascii_case(name)));
        match (loose.next(), loose.next()) {
            (Some((i, _)), None) => Some(i),
            _ => None,
        }
    })
}

/// After deserialization failed at `at` with `message`: when an override set that field
/// (one the file does not set, so its type was guessed), give it the type the message
/// asks for (a comma-separated list, or text). True when it changed.
pub fn retype(tree: &mut Value, applied: &[Applied], at: &str, message: &str) -> bool {
    let Some(a) = applied.iter().find(|a| a.at == at) else {
        return false;
    };
    let Some(slot) = a.keys.iter().try_fold(&mut *tree, |node, k| match node {
        Value::Array(v) => k.parse::<usize>().ok().and_then(|i| v.get_mut(i)),
        Value::Object(m) => m.get_mut(k),
        _ => None,
    }) else {
        return false;
    };
    let new = if message.contains("expected a sequence") && !slot.is_array() {
        Value::Array(
            a.text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        )
    } else if message.contains("expected a string") && !slot.is_string() {
        Value::String(a.text.clone())
    } else {
        return false;
    };
    *slot = new;
    true
}

/// Set the field at `path` under `node` to `text`, typed like the value it replaces;
/// returns the keys it went to.
fn set(node: &mut Value, path: &[String], text: &str) -> Result<Vec<String>, String> {
    let (last, parents) = path.split_last().expect("a non-empty path");
    let mut at = node;
    for p in parents {
        let obj = at
            .as_object_mut()
            .ok_or_else(|| format!("`{p}` is inside a value that is not a table"))?;
        at = obj
            .entry(p.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    let obj = at
        .as_object_mut()
        .ok_or_else(|| format!("`{last}` is inside a value that is not a table"))?;
    let key = obj
        .keys()
        .find(|k| k.eq_ignore_ascii_case(last))
        .cloned()
        .unwrap_or_else(|| last.clone());
    let typed = typed(obj.get(&key), text)?;
    obj.insert(key.clone(), typed);
    Ok(parents.iter().cloned().chain([key]).collect())
}

/// `text` as a value of the type of `old` (or read as JSON when there is none).
fn typed(old: Option<&Value>, text: &str) -> Result<Value, String> {
    let json = || serde_json::from_str::<Value>(text.trim());
    Ok(match old {
        Some(Value::Array(_)) => match json() {
            Ok(v @ Value::Array(_)) => v,
            _ if text.trim().is_empty() => Value::Array(Vec::new()),
            _ => Value::Array(
                text.split(',')
                    .map(|s| Value::String(s.trim().to_owned()))
                    .collect(),
            ),
        },
        Some(Value::Number(_)) => match json() {
            Ok(v @ Value::Number(_)) => v,
            _ => return Err(format!("must be a number, not `{text}`")),
        },
        Some(Value::Bool(_)) => match text.trim().to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(format!("must be true or false, not `{text}`")),
        },
        Some(Value::Object(_)) => match json() {
            Ok(v @ Value::Object(_)) => v,
            // A table given as a word (e.g. `start = { last = 5 }` → `latest`).
            _ => Value::String(text.to_owned()),
        },
        Some(Value::String(_)) => Value::String(text.to_owned()),
        None | Some(Value::Null) => match json() {
            Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Array(_) | Value::Object(_))) => v,
            _ => Value::String(text.to_owned()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tree() -> Value {
        json!({"server": {"listen": "0.0.0.0:1", "cors_origins": []}, "routes": [
            {"name": "orders", "source": {"type": "kafka", "brokers": ["x:1"], "topics": ["o"]}, "max_connections": 0},
            {"name": "Users", "source": {"type": "mongodb", "uri": "mongodb://x"}},
        ]})
    }

    fn run(vars: &[(&str, &str)]) -> Result<Value, ConfigError> {
        let mut t = tree();
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        apply(&mut t, &vars).map(|_| t)
    }

    #[test]
    fn fields_lists_and_nested_tables_are_set_by_route_name() {
        let t = run(&[
            (
                "SSE_BRIDGE__ROUTES__orders__SOURCE__BROKERS",
                "a:9092, b:9092",
            ),
            ("SSE_BRIDGE__ROUTES__orders__MAX_CONNECTIONS", "5"),
            (
                "SSE_BRIDGE__ROUTES__orders__SOURCE__PROPERTIES__security.protocol",
                "SASL_SSL",
            ),
            (
                "SSE_BRIDGE__ROUTES__USERS__SOURCE__URI",
                "mongodb://y/?replicaSet=rs",
            ),
            (
                "SSE_BRIDGE__ROUTES__orders__CORS_ORIGINS",
                r#"["https://a.example"]"#,
            ),
        ])
        .unwrap();
        let o = &t["routes"][0];
        assert_eq!(o["source"]["brokers"], json!(["a:9092", "b:9092"]));
        assert_eq!(o["max_connections"], json!(5));
        assert_eq!(
            o["source"]["properties"]["security.protocol"],
            json!("SASL_SSL")
        );
        assert_eq!(o["cors_origins"], json!(["https://a.example"]));
        assert_eq!(
            t["routes"][1]["source"]["uri"],
            json!("mongodb://y/?replicaSet=rs")
        );
    }

    #[test]
    fn server_fields_and_lists_are_set_by_path() {
        let t = run(&[
            ("SSE_BRIDGE__SERVER__LISTEN", "127.0.0.1:9"),
            (
                "SSE_BRIDGE__SERVER__CORS_ORIGINS",
                "https://a.example,https://b.example",
            ),
            ("SSE_BRIDGE__SERVER__MAX_CONNECTIONS", "7"),
            ("SSE_BRIDGE__SERVER__CATCHUP__WAIT", "2s"),
        ])
        .unwrap();
        let s = &t["server"];
        assert_eq!(s["listen"], json!("127.0.0.1:9"));
        assert_eq!(
            s["cors_origins"],
            json!(["https://a.example", "https://b.example"])
        );
        assert_eq!(s["max_connections"], json!(7));
        assert_eq!(s["catchup"]["wait"], json!("2s"));
    }

    #[test]
    fn an_override_naming_no_route_or_no_field_or_a_bad_type_is_an_error_naming_it() {
        let e = run(&[("SSE_BRIDGE__ROUTES__nope__MAX_CONNECTIONS", "5")]).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("SSE_BRIDGE__ROUTES__nope__MAX_CONNECTIONS"),
            "{msg}"
        );
        assert!(
            msg.contains("`nope`, which is not configured (routes: orders, Users)"),
            "{msg}"
        );
        let e = run(&[("SSE_BRIDGE__ROUTES__orders", "x")]).unwrap_err();
        assert!(e.to_string().contains("names no field"), "{e}");
        let e = run(&[("SSE_BRIDGE__ROUTES__orders__MAX_CONNECTIONS", "many")]).unwrap_err();
        assert!(
            e.to_string().contains("must be a number, not `many`"),
            "{e}"
        );
        let e = run(&[("SSE_BRIDGE__ROUTES__orders__NAME", "other")]).unwrap_err();
        assert!(e.to_string().contains("cannot rename"), "{e}");
    }
}
