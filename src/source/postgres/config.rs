//! `source = { type = "postgres", ... }`: typed config of the PostgreSQL logical
//! replication adapter, and the connection it describes.

use std::time::Duration;

use pgwire_replication::{ReplicationConfig, SslMode, TlsConfig};
use serde::Deserialize;

use crate::problems::Problems;

/// Row changes of the tables of one publication feeding one route. The route's
/// position is the commit LSN of a transaction and the index of a change within it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSourceConfig {
    /// `postgres://user:password@host:port/database?sslmode=verify-full`.
    pub url: String,
    /// Password, when not in `url` (e.g. from an environment override).
    #[serde(default)]
    pub password: Option<String>,
    /// PEM certificates trusted for `sslmode=verify-ca|verify-full` besides the system's.
    #[serde(default)]
    pub tls_ca_file: Option<String>,
    /// The publication whose changes the route serves.
    pub publication: String,
    /// Only these tables (`schema.table`, or `table` for `public.table`); with
    /// `create_publication`, the tables the publication is made of.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Create the publication when missing, and set its tables to `tables`.
    #[serde(default)]
    pub create_publication: bool,
    /// How far back ids stay resumable: the route's replication slot confirms only
    /// positions older than this, so the database keeps the WAL after them.
    #[serde(default = "default_window", with = "humantime_serde")]
    pub resume_window: Duration,
    /// A slot of this route left by a replica that went away (inactive this long) is
    /// dropped, so it holds no WAL.
    #[serde(default = "default_stale", with = "humantime_serde")]
    pub stale_slot_after: Duration,
    /// Start of the names of the slots the bridge creates: `<prefix>_<route>__<replica>`.
    #[serde(default = "default_prefix")]
    pub slot_prefix: String,
    /// This replica's name in its slot's name; default: `$POD_NAME`, else `$HOSTNAME`.
    #[serde(default)]
    pub replica: Option<String>,
}

fn default_window() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_stale() -> Duration {
    Duration::from_secs(10 * 60)
}

fn default_prefix() -> String {
    "sse_bridge".into()
}

/// Where and how to connect, from `url`.
#[derive(Debug, Clone)]
pub struct Conn {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
    pub tls: TlsConfig,
}

impl Conn {
    /// A replication session on `slot` (the publication is the route's).
    pub fn session(&self, slot: &str, publication: &str) -> ReplicationConfig {
        ReplicationConfig::new(
            self.host.clone(),
            self.user.clone(),
            self.password.clone(),
            self.database.clone(),
            slot,
            publication.to_owned(),
        )
        .with_port(self.port)
        .with_tls(self.tls.clone())
        // Values in the forms the encoder parses, whatever the server's defaults.
        .with_options(
            "-c datestyle=ISO,YMD -c intervalstyle=iso_8601 -c timezone=UTC \
             -c extra_float_digits=3 -c bytea_output=hex",
        )
        .with_application_name("sse-bridge")
    }
}

/// An unquoted SQL identifier (what the bridge accepts for names it puts in SQL).
pub fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
}

/// `schema.table` of a `tables` entry (`public` when no schema is given).
pub fn split_table(t: &str) -> Option<(&str, &str)> {
    let (schema, table) = t.split_once('.').unwrap_or(("public", t));
    (is_ident(schema) && is_ident(table)).then_some((schema, table))
}

impl PostgresSourceConfig {
    /// The connection `url` describes.
    pub fn conn(&self) -> Result<Conn, String> {
        let u = url::Url::parse(&self.url).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(u.scheme(), "postgres" | "postgresql") {
            return Err("must be a `postgres://user:password@host:port/database` URL".into());
        }
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let host = u.host_str().unwrap_or_default().to_owned();
        let user = decode(u.username());
        let database = decode(u.path().trim_start_matches('/'));
        if host.is_empty() || user.is_empty() || database.is_empty() {
            return Err("must name a host, a user and a database".into());
        }
        let mut mode = SslMode::Prefer;
        for (k, v) in u.query_pairs() {
            match &*k {
                "sslmode" => {
                    mode = match &*v {
                        "disable" => SslMode::Disable,
                        "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-ca" => SslMode::VerifyCa,
                        "verify-full" => SslMode::VerifyFull,
                        _ => return Err(format!("unknown sslmode `{v}`: use disable, prefer, require, verify-ca or verify-full")),
                    }
                }
                other => return Err(format!("unknown URL parameter `{other}` (only `sslmode`)")),
            }
        }
        let ca = self.tls_ca_file.clone().map(Into::into);
        let tls = match mode {
            SslMode::Disable => TlsConfig::disabled(),
            SslMode::Prefer => TlsConfig {
                mode: SslMode::Prefer,
                ..TlsConfig::disabled()
            },
            SslMode::Require => TlsConfig::require(),
            SslMode::VerifyCa => TlsConfig::verify_ca(ca),
            SslMode::VerifyFull => TlsConfig::verify_full(ca),
        };
        Ok(Conn {
            host,
            port: u.port().unwrap_or(5432),
            user,
            password: self
                .password
                .clone()
                .or_else(|| u.password().map(decode))
                .unwrap_or_default(),
            database,
            tls,
        })
    }

    /// The tables of `tables` as (schema, table).
    pub fn table_names(&self) -> Vec<(String, String)> {
        self.tables
            .iter()
            .filter_map(|t| split_table(t))
            .map(|(s, t)| (s.to_owned(), t.to_owned()))
            .collect()
    }

    /// Report every problem of this section under `at` (e.g. `routes[1].source`).
    pub(crate) fn validate(&self, at: &str, p: &mut Problems) {
        if let Err(e) = self.conn() {
            p.push(format!("{at}.url"), e);
        }
        if !is_ident(&self.publication) {
            p.push(
                format!("{at}.publication"),
                "must be a lower-case SQL identifier (letters, digits, `_`; at most 63)",
            );
        }
        for (i, t) in self.tables.iter().enumerate() {
            if split_table(t).is_none() {
                p.push(
                    format!("{at}.tables[{i}]"),
                    "must be `schema.table` or `table` of lower-case SQL identifiers",
                );
            }
        }
        if self.create_publication && self.tables.is_empty() {
            p.push(
                format!("{at}.tables"),
                "`create_publication` needs the tables the publication is made of",
            );
        }
        let prefix_ok = !self.slot_prefix.is_empty()
            && self.slot_prefix.len() <= 16
            && !self.slot_prefix.contains("__")
            && is_ident(&self.slot_prefix);
        if !prefix_ok {
            p.push(
                format!("{at}.slot_prefix"),
                "must be 1 to 16 of `a-z`, `0-9`, `_` (starting with a letter or `_`, no `__`)",
            );
        }
        if let Some(r) = &self.replica {
            if r.is_empty() || r.len() > 63 {
                p.push(format!("{at}.replica"), "must be 1 to 63 characters");
            }
        }
        if self.stale_slot_after < Duration::from_secs(10) {
            p.push(
                format!("{at}.stale_slot_after"),
                "must be at least 10s (longer than a replica takes to restart, or it loses its slot)",
            );
        }
    }

    /// What the console shows: the database, the publication and its tables.
    pub(crate) fn describe(&self) -> String {
        let db = self
            .conn()
            .map(|c| format!("{}:{}/{}", c.host, c.port, c.database))
            .unwrap_or_default();
        if self.tables.is_empty() {
            format!("{db} publication {}", self.publication)
        } else {
            format!(
                "{db} publication {} ({})",
                self.publication,
                self.tables.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> PostgresSourceConfig {
        serde_json::from_value(serde_json::json!({ "url": url, "publication": "p" })).unwrap()
    }

    #[test]
    fn urls() {
        let c = cfg("postgres://bridge:s%40cret@db.example:6543/app?sslmode=verify-full")
            .conn()
            .unwrap();
        assert_eq!(
            (&*c.host, c.port, &*c.user, &*c.password, &*c.database),
            ("db.example", 6543, "bridge", "s@cret", "app")
        );
        assert_eq!(c.tls.mode, SslMode::VerifyFull);
        for bad in [
            "mysql://u@h/db",
            "postgres://h/db",
            "postgres://u@h/",
            "postgres://u@h/db?sslmode=maybe",
            "postgres://u@h/db?connect_timeout=3",
        ] {
            assert!(cfg(bad).conn().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_problem_is_named_by_its_field() {
        let c: PostgresSourceConfig = serde_json::from_value(serde_json::json!({
            "url": "postgres://u@h/db?sslmode=maybe",
            "publication": "Bad Name",
            "tables": ["ok", "x;drop"],
            "create_publication": true,
            "slot_prefix": "a__b",
            "stale_slot_after": "1s",
        }))
        .unwrap();
        let mut p = Problems::default();
        c.validate("routes[0].source", &mut p);
        let paths: Vec<&str> = p.as_slice().iter().map(|x| x.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "routes[0].source.url",
                "routes[0].source.publication",
                "routes[0].source.tables[1]",
                "routes[0].source.slot_prefix",
                "routes[0].source.stale_slot_after",
            ]
        );
    }

    #[test]
    fn names() {
        assert_eq!(split_table("orders"), Some(("public", "orders")));
        assert_eq!(split_table("shop.orders"), Some(("shop", "orders")));
        for bad in ["", "Orders", "a.b.c", "x;drop", "\"q\""] {
            assert!(split_table(bad).is_none(), "{bad}");
        }
    }
}
