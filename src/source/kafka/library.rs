//! The librdkafka linked in: its version and the features it was built with, for
//! `sse-bridge --version`, the startup log and the test that the build can read every
//! codec and log in every way Kafka clusters ask for.

use rdkafka::config::ClientConfig;

/// Features the build must have: every codec Kafka producers use, and every login.
pub const REQUIRED_FEATURES: &[&str] = &[
    "gzip",
    "snappy",
    "lz4",
    "zstd",
    "ssl",
    "sasl_gssapi",
    "sasl_scram",
    "sasl_oauthbearer",
    "oidc",
];

/// librdkafka's version string and its `builtin.features` (comma-separated).
pub fn librdkafka() -> (String, String) {
    let (_, version) = rdkafka::util::get_rdkafka_version();
    let features = ClientConfig::new()
        .create_native_config()
        .and_then(|c| c.get("builtin.features"))
        .unwrap_or_else(|e| format!("unknown ({e})"));
    (version, features)
}

/// The required features `features` (librdkafka's `builtin.features`) lacks.
pub fn missing_features(features: &str) -> Vec<&'static str> {
    let have: Vec<&str> = features.split(',').map(str::trim).collect();
    REQUIRED_FEATURES
        .iter()
        .copied()
        .filter(|f| !have.contains(f))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_linked_librdkafka_has_every_codec_and_login() {
        let (version, features) = librdkafka();
        assert!(!version.is_empty());
        assert_eq!(
            missing_features(&features),
            Vec::<&str>::new(),
            "librdkafka {version} builtin.features = {features}"
        );
    }
}
