//! Client authentication: JSON Web Tokens verified with the algorithm and key the route's
//! configuration fixes (a token's own `alg` never chooses), with issuer, audience, expiry
//! and not-before checks; then the route's `require`d claims. Errors say only
//! "unauthorized" or "forbidden" — never which check failed, and never the token.

pub mod token;

use std::time::Duration;

use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::config::{JwtAlgorithm, JwtConfig};

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

    /// Expiry (seconds since the epoch).
    pub fn exp(&self) -> Option<u64> {
        self.0.get("exp").and_then(Value::as_u64)
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
    Set(Vec<(Option<String>, DecodingKey)>),
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
                match (&cfg.public_key_file, &cfg.jwks_file) {
                    (Some(f), None) => {
                        let pem = read(f).map_err(|e| ("public_key_file", e))?;
                        let k = if alg == Algorithm::RS256 {
                            DecodingKey::from_rsa_pem(&pem)
                        } else {
                            DecodingKey::from_ec_pem(&pem)
                        };
                        Keys::One(k.map_err(|e| ("public_key_file", format!("{f}: {e}")))?)
                    }
                    (None, Some(f)) => {
                        let set: JwkSet =
                            serde_json::from_slice(&read(f).map_err(|e| ("jwks_file", e))?)
                                .map_err(|e| ("jwks_file", format!("{f}: not a JWKS: {e}")))?;
                        let mut keys = Vec::new();
                        for k in &set.keys {
                            let dk = DecodingKey::from_jwk(k)
                                .map_err(|e| ("jwks_file", format!("{f}: {e}")))?;
                            keys.push((k.common.key_id.clone(), dk));
                        }
                        if keys.is_empty() {
                            return Err(("jwks_file", format!("{f}: holds no key")));
                        }
                        Keys::Set(keys)
                    }
                    _ => {
                        return Err((
                            "public_key_file",
                            "RS256/ES256 need exactly one of public_key_file, jwks_file".into(),
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
        let key = match &self.keys {
            Keys::One(k) => k,
            Keys::Set(keys) => {
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
                &found.ok_or(AuthError::Unauthorized)?.1
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
