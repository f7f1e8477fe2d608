//! Client authentication: JSON Web Tokens verified with the algorithm and key the route's
//! configuration fixes (a token's own `alg` never chooses), with issuer, audience, expiry
//! and not-before checks; then the route's `require`d claims. Errors say only
//! "unauthorized" or "forbidden" — never which check failed, and never the token.

mod config;
mod jwks;
pub mod token;

pub use config::{JwtAlgorithm, JwtConfig};

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No token, or one that does not verify: 401.
    Unauthorized,
    /// A valid token without access to the route: 403.
    Forbidden,
}

/// A verified token's claims.
#[derive(Debug, Clone, Default)]
pub struct Claims(Map<String, Value>);

impl Claims {
    /// A claim as a value to compare: strings as-is, numbers and booleans as their JSON
    /// text; `None` for anything else (objects, arrays, null, missing).
    pub fn value(&self, name: &str) -> Option<String> {
        match self.0.get(name)? {
            Value::String(s) => Some(s.clone()),
            v @ (Value::Number(_) | Value::Bool(_)) => Some(v.to_string()),
            _ => None,
        }
    }

    /// Expiry (whole seconds since the epoch; a fractional `exp`, which the verifier
    /// accepts, is rounded down, so the stream never outlives the token).
    pub fn exp(&self) -> Option<u64> {
        let v = self.0.get("exp")?;
        v.as_u64().or_else(|| {
            v.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f.floor() as u64)
        })
    }

    fn grants(&self, claim: &str, want: &str) -> bool {
        match self.0.get(claim) {
            Some(Value::String(s)) => {
                s == want || (matches!(claim, "scope" | "scp") && s.split(' ').any(|x| x == want))
            }
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(want)),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => {
                let text = v.to_string();
                text == want
            }
            _ => false,
        }
    }
}

enum Keys {
    One(DecodingKey),
    /// JWKS keys by `kid`.
    Set(jwks::KeySet),
    /// A JWKS kept fresh from its URL.
    Remote(Arc<jwks::RemoteJwks>, Duration),
}

/// A route's token verifier.
pub struct Authenticator {
    keys: Keys,
    validation: Validation,
    leeway: Duration,
    cookie: Option<String>,
    query_token: bool,
    require: Vec<(String, String)>,
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))
}

impl Authenticator {
    /// Load the keys `cfg` names; errors name the field at fault (relative to `auth`).
    pub fn new(cfg: &JwtConfig) -> Result<Authenticator, (&'static str, String)> {
        let alg = match cfg.algorithm {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::RS256 => Algorithm::RS256,
            JwtAlgorithm::ES256 => Algorithm::ES256,
        };
        let keys = match cfg.algorithm {
            JwtAlgorithm::HS256 => {
                let secret = match (&cfg.secret, &cfg.secret_env, &cfg.secret_file) {
                    (Some(s), None, None) => s.clone().into_bytes(),
                    (None, Some(var), None) => std::env::var(var)
                        .map_err(|_| {
                            (
                                "secret_env",
                                format!("environment variable {var} is not set"),
                            )
                        })?
                        .into_bytes(),
                    (None, None, Some(f)) => {
                        let mut b = read(f).map_err(|e| ("secret_file", e))?;
                        while b.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
                            b.pop();
                        }
                        b
                    }
                    _ => {
                        return Err((
                            "secret",
                            "HS256 needs exactly one of secret, secret_env, secret_file".into(),
                        ))
                    }
                };
                if cfg.public_key_file.is_some() || cfg.jwks_file.is_some() {
                    return Err((
                        "public_key_file",
                        "HS256 takes a secret, not a public key".into(),
                    ));
                }
                if secret.len() < 32 {
                    return Err(("secret", "must be at least 32 bytes".into()));
                }
                Keys::One(DecodingKey::from_secret(&secret))
            }
            JwtAlgorithm::RS256 | JwtAlgorithm::ES256 => {
                if cfg.secret.is_some() || cfg.secret_env.is_some() || cfg.secret_file.is_some() {
                    return Err((
                        "secret",
                        "RS256/ES256 take a public key or a JWKS, not a secret".into(),
                    ));
                }
                match (&cfg.public_key_file, &cfg.jwks_file, &cfg.jwks_url) {
                    (Some(f), None, None) => {
                        let pem = read(f).map_err(|e| ("public_key_file", e))?;
                        let k = if alg == Algorithm::RS256 {
                            DecodingKey::from_rsa_pem(&pem)
                        } else {
                            DecodingKey::from_ec_pem(&pem)
                        };
                        Keys::One(k.map_err(|e| ("public_key_file", format!("{f}: {e}")))?)
                    }
                    (None, Some(f), None) => {
                        let body = read(f).map_err(|e| ("jwks_file", e))?;
                        Keys::Set(
                            jwks::parse(&body).map_err(|e| ("jwks_file", format!("{f}: {e}")))?,
                        )
                    }
                    (None, None, Some(url)) => {
                        if cfg.jwks_refresh < Duration::from_secs(10) {
                            return Err(("jwks_refresh", "must be at least 10s".into()));
                        }
                        let remote = jwks::RemoteJwks::new(url, cfg.jwks_ca_file.as_deref())
                            .map_err(|e| ("jwks_url", e))?;
                        Keys::Remote(Arc::new(remote), cfg.jwks_refresh)
                    }
                    _ => {
                        return Err((
                            "public_key_file",
                            "RS256/ES256 need exactly one of public_key_file, jwks_file, jwks_url"
                                .into(),
                        ))
                    }
                }
            }
        };
        let mut validation = Validation::new(alg);
        validation.leeway = cfg.leeway.as_secs();
        validation.validate_nbf = true;
        // A configured issuer or audience must be present in the token, not only match
        // when present.
        let mut required = vec!["exp"];
        match &cfg.audience {
            Some(a) => {
                validation.set_audience(&[a]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(i) = &cfg.issuer {
            validation.set_issuer(&[i]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(Authenticator {
            keys,
            validation,
            leeway: cfg.leeway,
            cookie: cfg.cookie.clone(),
            query_token: cfg.query_token,
            require: cfg
                .require
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    /// Verify `token`.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let remote;
        let key = match &self.keys {
            Keys::One(k) => k,
            Keys::Set(keys) => pick(keys, token)?,
            Keys::Remote(r, _) => {
                remote = r.keys();
                pick(&remote, token)?
            }
        };
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &self.validation)
            .map_err(|_| AuthError::Unauthorized)?;
        let claims = Claims(data.claims);
        if self.require.iter().all(|(c, v)| claims.grants(c, v)) {
            Ok(claims)
        } else {
            Err(AuthError::Forbidden)
        }
    }

    /// Keys fetched from a URL: start fetching them (now, then every `jwks_refresh`) on
    /// `tracker` until `stop`. Nothing for keys from files.
    pub fn start_refresh(&self, tracker: &TaskTracker, stop: CancellationToken) {
        if let Keys::Remote(r, every) = &self.keys {
            r.clone().spawn_refresh(*every, tracker, stop);
        }
    }

    /// Before [`Authenticator::authorize`]: when the request's token names a key id a
    /// fetched JWKS lacks, fetch it again (rate-limited) so a key the identity provider
    /// just rotated in is accepted at once.
    pub async fn prepare(&self, headers: &http::HeaderMap, query: &str) {
        let Keys::Remote(r, _) = &self.keys else {
            return;
        };
        let Some(t) = token::extract(headers, query, self.query_token, self.cookie.as_deref())
        else {
            return;
        };
        if let Ok(h) = jsonwebtoken::decode_header(&t) {
            r.refetch_for(h.kid.as_deref()).await;
        }
    }

    /// True when the keys come from a URL (they refresh themselves; a reload keeps them).
    pub fn is_remote(&self) -> bool {
        matches!(self.keys, Keys::Remote(..))
    }

    /// Find the request's token and verify it.
    pub fn authorize(&self, headers: &http::HeaderMap, query: &str) -> Result<Claims, AuthError> {
        let t = token::extract(headers, query, self.query_token, self.cookie.as_deref())
            .ok_or(AuthError::Unauthorized)?;
        self.verify(&t)
    }

    /// The clock skew allowed.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }
}

/// The key of `keys` the token's `kid` names (the only key, when it names none).
fn pick<'a>(keys: &'a jwks::KeySet, token: &str) -> Result<&'a DecodingKey, AuthError> {
    let kid = jsonwebtoken::decode_header(token)
        .map_err(|_| AuthError::Unauthorized)?
        .kid;
    let found = match kid {
        Some(kid) => keys
            .iter()
            .find(|(k, _)| k.as_deref() == Some(kid.as_str())),
        None if keys.len() == 1 => keys.first(),
        None => None,
    };
    Ok(&found.ok_or(AuthError::Unauthorized)?.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        match v {
            Value::Object(m) => Claims(m),
            _ => panic!("claims must be an object"),
        }
    }

    #[test]
    fn grants_string_equality() {
        let c = claims(json!({"role": "admin"}));
        assert!(c.grants("role", "admin"));
        assert!(!c.grants("role", "Admin"), "case-sensitive");
        assert!(!c.grants("role", "adm"), "no prefix match");
        assert!(!c.grants("role", "admin "), "no trimming");
    }

    #[test]
    fn grants_scope_lists_by_member() {
        for claim in ["scope", "scp"] {
            let c = claims(json!({ claim: "read write" }));
            assert!(c.grants(claim, "read"), "{claim}");
            assert!(c.grants(claim, "write"), "{claim}");
            assert!(c.grants(claim, "read write"), "{claim}: whole string");
            assert!(!c.grants(claim, "rea"), "{claim}: not a substring");
            assert!(!c.grants(claim, "admin"), "{claim}");
            let c = claims(json!({ claim: "readonly" }));
            assert!(!c.grants(claim, "read"), "{claim}: not a prefix");
        }
    }

    #[test]
    fn grants_other_claims_with_spaces_match_whole() {
        let c = claims(json!({"groups": "read write"}));
        assert!(!c.grants("groups", "read"));
        assert!(!c.grants("groups", "write"));
        assert!(c.grants("groups", "read write"));
    }

    #[test]
    fn grants_arrays_match_string_elements_only() {
        let c = claims(json!({"roles": ["a", "b c", 42, true, null], "scope": ["read write"]}));
        assert!(c.grants("roles", "a"));
        assert!(c.grants("roles", "b c"));
        assert!(!c.grants("roles", "b"), "array elements are not split");
        assert!(!c.grants("roles", "42"), "numbers in arrays never match");
        assert!(!c.grants("roles", "true"), "booleans in arrays never match");
        assert!(!c.grants("roles", "null"));
        assert!(
            !c.grants("scope", "read"),
            "a scope array is not split either"
        );
        assert!(c.grants("scope", "read write"));
    }

    #[test]
    fn grants_numbers_and_booleans_as_json_text() {
        let c = claims(json!({"level": 42, "admin": true, "off": false, "ratio": 1.5}));
        assert!(c.grants("level", "42"));
        assert!(!c.grants("level", "42.0"));
        assert!(!c.grants("level", "042"));
        assert!(c.grants("admin", "true"));
        assert!(!c.grants("admin", "True"));
        assert!(c.grants("off", "false"));
        assert!(c.grants("ratio", "1.5"));
    }

    #[test]
    fn grants_never_null_object_or_missing() {
        let c = claims(json!({"n": null, "o": {"a": "b"}, "e": {}}));
        assert!(!c.grants("n", "null"));
        assert!(!c.grants("n", ""));
        assert!(!c.grants("o", "b"));
        assert!(!c.grants("o", r#"{"a":"b"}"#));
        assert!(!c.grants("e", "{}"));
        assert!(!c.grants("missing", ""));
        assert!(!c.grants("missing", "x"));
    }

    #[test]
    fn value_of_scalars_only() {
        let c = claims(json!({
            "s": "a b", "n": 42, "f": 1.5, "t": true,
            "a": ["x"], "o": {"k": 1}, "z": null
        }));
        assert_eq!(c.value("s").as_deref(), Some("a b"));
        assert_eq!(c.value("n").as_deref(), Some("42"));
        assert_eq!(c.value("f").as_deref(), Some("1.5"));
        assert_eq!(c.value("t").as_deref(), Some("true"));
        assert_eq!(c.value("a"), None);
        assert_eq!(c.value("o"), None);
        assert_eq!(c.value("z"), None);
        assert_eq!(c.value("missing"), None);
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn hs256(require: &[(&str, &str)]) -> Authenticator {
        let cfg = JwtConfig {
            algorithm: JwtAlgorithm::HS256,
            secret: Some(SECRET.into()),
            secret_env: None,
            secret_file: None,
            public_key_file: None,
            jwks_file: None,
            jwks_url: None,
            jwks_refresh: Duration::from_secs(300),
            jwks_ca_file: None,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(0),
            cookie: None,
            query_token: true,
            require: require
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        match Authenticator::new(&cfg) {
            Ok(a) => a,
            Err((field, e)) => panic!("{field}: {e}"),
        }
    }

    fn token(claims: Value, secret: &str) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn in_an_hour() -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        now.as_secs() + 3600
    }

    #[test]
    fn verify_applies_require() {
        let auth = hs256(&[("scope", "read"), ("tenant", "acme")]);
        let exp = in_an_hour();
        let ok = token(
            json!({"exp": exp, "scope": "read write", "tenant": "acme"}),
            SECRET,
        );
        let claims = auth.verify(&ok).unwrap();
        assert_eq!(claims.value("tenant").as_deref(), Some("acme"));
        assert_eq!(claims.exp(), Some(exp));
        let one_missing = token(json!({"exp": in_an_hour(), "scope": "read"}), SECRET);
        assert_eq!(auth.verify(&one_missing).err(), Some(AuthError::Forbidden));
        let one_wrong = token(
            json!({"exp": in_an_hour(), "scope": "readonly", "tenant": "acme"}),
            SECRET,
        );
        assert_eq!(auth.verify(&one_wrong).err(), Some(AuthError::Forbidden));
    }

    #[test]
    fn a_fractional_exp_still_ends_the_stream() {
        let auth = hs256(&[]);
        let exp = in_an_hour();
        let claims = auth
            .verify(&token(json!({"exp": exp as f64 + 0.5}), SECRET))
            .expect("the verifier accepts a fractional exp");
        assert_eq!(claims.exp(), Some(exp), "rounded down, never up");
        let c = Claims(json!({"exp": -1.5}).as_object().unwrap().clone());
        assert_eq!(c.exp(), None, "a negative exp is no expiry time");
    }

    #[test]
    fn verify_without_require_accepts_any_valid_token() {
        let auth = hs256(&[]);
        assert!(auth
            .verify(&token(json!({"exp": in_an_hour()}), SECRET))
            .is_ok());
    }

    #[test]
    fn verify_unauthorized_before_forbidden() {
        let auth = hs256(&[("tenant", "acme")]);
        let no_exp = token(json!({"tenant": "acme"}), SECRET);
        assert_eq!(auth.verify(&no_exp).err(), Some(AuthError::Unauthorized));
        let wrong_key = token(
            json!({"exp": in_an_hour(), "tenant": "acme"}),
            "another secret of at least 32 bytes!",
        );
        assert_eq!(auth.verify(&wrong_key).err(), Some(AuthError::Unauthorized));
        let expired = token(json!({"exp": 1_000_000_000u64, "tenant": "acme"}), SECRET);
        assert_eq!(auth.verify(&expired).err(), Some(AuthError::Unauthorized));
        let expired_and_forbidden = token(json!({"exp": 1_000_000_000u64}), SECRET);
        assert_eq!(
            auth.verify(&expired_and_forbidden).err(),
            Some(AuthError::Unauthorized)
        );
        assert_eq!(
            auth.verify("not a token").err(),
            Some(AuthError::Unauthorized)
        );
    }
}
