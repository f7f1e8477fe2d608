//! Amazon MSK IAM login: `aws_msk_iam = { region = "..." }` on a Kafka source.
//!
//! MSK's IAM listeners (port 9098) take SASL/OAUTHBEARER with a token that is a
//! SigV4-presigned `kafka-cluster:Connect` URL, base64url-encoded, the format of AWS's
//! own signers (`aws-msk-iam-sasl-signer-{go,python,java}`; the unit test pins a token
//! signed by the Python one). librdkafka cannot make it, so the adapter's clients get
//! it from [`KafkaContext`]: a per-route task ([`MskIam::keep_fresh`]) takes credentials
//! from AWS's default chain (environment, profile, SSO, web identity as with EKS IRSA,
//! EKS Pod Identity, ECS, EC2 instance metadata; optionally assuming `role_arn` on
//! top), signs a token every few minutes and keeps it; librdkafka's refresh callback,
//! run on the thread polling a client, only hands out the kept token (no network I/O).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::BehaviorVersion;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use base64::Engine;
use parking_lot::Mutex;
use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::consumer::ConsumerContext;
use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::RouteMetrics;
use crate::problems::Problems;
use crate::source::SourceError;

/// A token is valid this long (as with AWS's signers).
const TOKEN_LIFETIME: Duration = Duration::from_secs(900);
/// A new token is signed this often (or sooner when the credentials expire sooner).
const RESIGN_EVERY: Duration = Duration::from_secs(300);
/// A token closer than this to its expiry is not handed out.
const MIN_REMAINING: Duration = Duration::from_secs(30);
/// Retries of a failed sign-in back off up to this.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// `aws_msk_iam`: sign in to Amazon MSK with IAM.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MskIamConfig {
    /// The cluster's AWS region; default: taken from the broker names
    /// (`b-1.<cluster>.<id>.c2.kafka.<region>.amazonaws.com`), else `AWS_REGION` /
    /// `AWS_DEFAULT_REGION`.
    #[serde(default)]
    pub region: Option<String>,
    /// A profile of `~/.aws/config` to take credentials from (default: `AWS_PROFILE`, else
    /// the default chain).
    #[serde(default)]
    pub profile: Option<String>,
    /// A role to assume with the chain's credentials (cross-account clusters).
    #[serde(default)]
    pub role_arn: Option<String>,
    /// The session name of `role_arn` (default `sse-bridge`).
    #[serde(default)]
    pub role_session_name: Option<String>,
}

impl MskIamConfig {
    /// The region: configured, else read from the broker names, else from the
    /// environment.
    pub(super) fn region(&self, brokers: &[String]) -> Option<String> {
        self.region
            .clone()
            .or_else(|| brokers.iter().find_map(|b| region_of_broker(b)))
            .or_else(|| {
                ["AWS_REGION", "AWS_DEFAULT_REGION"]
                    .iter()
                    .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
            })
    }

    /// Problems of this section and of the properties it must agree with.
    pub(super) fn validate(
        &self,
        brokers: &[String],
        props: &std::collections::BTreeMap<String, String>,
        at: &str,
        p: &mut Problems,
    ) {
        match self.region(brokers) {
            None => p.push(
                format!("{at}.aws_msk_iam.region"),
                "must be set: no region in the broker names (`*.kafka.<region>.amazonaws.com`) \
                 nor in AWS_REGION / AWS_DEFAULT_REGION",
            ),
            Some(r) if !is_region(&r) => p.push(
                format!("{at}.aws_msk_iam.region"),
                format!("`{r}` is not an AWS region name (e.g. `eu-west-1`)"),
            ),
            Some(_) => {}
        }
        if let Some(arn) = &self.role_arn {
            if !arn.starts_with("arn:") || !arn.contains(":role/") {
                p.push(
                    format!("{at}.aws_msk_iam.role_arn"),
                    "must be an IAM role ARN (`arn:aws:iam::<account>:role/<name>`)",
                );
            }
        }
        // The login is OAUTHBEARER with the bridge's token: properties may repeat that,
        // never contradict it.
        let allowed: &[(&str, &[&str])] = &[
            ("security.protocol", &["SASL_SSL", "SASL_PLAINTEXT"]),
            ("sasl.mechanism", &["OAUTHBEARER"]),
            ("sasl.mechanisms", &["OAUTHBEARER"]),
            ("sasl.oauthbearer.method", &["default"]),
            ("enable.sasl.oauthbearer.unsecure.jwt", &["false"]),
        ];
        for (key, ok) in allowed {
            if let Some(v) = props.get(*key) {
                if !ok.iter().any(|o| o.eq_ignore_ascii_case(v)) {
                    p.push(
                        format!("{at}.properties.\"{key}\""),
                        format!(
                            "is `{v}`, but aws_msk_iam signs in with SASL/OAUTHBEARER (allowed: {})",
                            ok.join(", ")
                        ),
                    );
                }
            }
        }
    }
}

/// `kafka.<region>.amazonaws.com` in an MSK broker name, e.g.
/// `b-1.demo.abc123.c2.kafka.eu-west-1.amazonaws.com:9098` → `eu-west-1`.
fn region_of_broker(broker: &str) -> Option<String> {
    let host = broker.rsplit_once(':').map_or(broker, |(h, _)| h);
    let rest = host.strip_suffix(".amazonaws.com")?;
    let (before, region) = rest.rsplit_once('.')?;
    (before == "kafka" || before.ends_with(".kafka")).then(|| region.to_owned())
}

fn is_region(r: &str) -> bool {
    r.split('-').count() >= 3
        && r.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A signed token and its expiry (ms since the epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Token {
    pub value: String,
    pub expires_ms: i64,
}

fn epoch_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The MSK IAM token for `creds` in `region` at `now`: the presigned
/// `GET https://kafka.<region>.amazonaws.com/?Action=kafka-cluster:Connect` (SigV4,
/// service `kafka-cluster`, valid 900 s or until the credentials expire), with a
/// `User-Agent` parameter, base64url without padding.
pub(super) fn sign_token(
    creds: &Credentials,
    region: &str,
    now: SystemTime,
) -> Result<Token, String> {
    let url = format!("https://kafka.{region}.amazonaws.com/?Action=kafka-cluster%3AConnect");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("kafka-cluster")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let request = SignableRequest::new(
        "GET",
        url.as_str(),
        std::iter::empty(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let mut req = http::Request::builder()
        .uri(url.as_str())
        .body(())
        .map_err(|e| e.to_string())?;
    instructions.apply_to_request_http1x(&mut req);
    let signed = format!(
        "{}&User-Agent=sse-bridge%2F{}",
        req.uri(),
        env!("CARGO_PKG_VERSION")
    );
    let mut expires_ms = epoch_ms(now + TOKEN_LIFETIME);
    if let Some(until) = creds.expiry() {
        expires_ms = expires_ms.min(epoch_ms(until));
    }
    Ok(Token {
        value: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signed),
        expires_ms,
    })
}

/// What the sign-in task has to say: signed in, or why not.
#[derive(Clone, Debug, Default)]
enum Status {
    #[default]
    Starting,
    Ready,
    Failed(String),
}

/// The MSK IAM login of one route: the kept token and the task that renews it.
pub(super) struct MskIam {
    route: String,
    region: String,
    cfg: MskIamConfig,
    status: watch::Sender<Status>,
    kept: Mutex<Option<Token>>,
    metrics: RouteMetrics,
}

impl MskIam {
    pub(super) fn new(
        route: &str,
        cfg: &MskIamConfig,
        brokers: &[String],
        metrics: RouteMetrics,
    ) -> Arc<MskIam> {
        Arc::new(MskIam {
            route: route.to_owned(),
            // Validation made sure there is one.
            region: cfg.region(brokers).unwrap_or_default(),
            cfg: cfg.clone(),
            status: watch::Sender::new(Status::Starting),
            kept: Mutex::new(None),
            metrics,
        })
    }

    /// AWS's default credential chain (or `profile`), with `role_arn` assumed on top.
    async fn credentials(&self) -> Result<SharedCredentialsProvider, String> {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(self.region.clone()))
            .http_client(http);
        if let Some(p) = &self.cfg.profile {
            loader = loader.profile_name(p);
        }
        let sdk = loader.load().await;
        // The loader always sets the default chain.
        let chain = sdk
            .credentials_provider()
            .ok_or("the AWS SDK configured no credential provider")?;
        Ok(match &self.cfg.role_arn {
            None => chain,
            Some(arn) => SharedCredentialsProvider::new(
                aws_config::sts::AssumeRoleProvider::builder(arn)
                    .session_name(
                        self.cfg
                            .role_session_name
                            .clone()
                            .unwrap_or_else(|| "sse-bridge".into()),
                    )
                    .configure(&sdk)
                    .build_from_provider(chain)
                    .await,
            ),
        })
    }

    /// Sign a token now, and again before it expires, until `cancel`; failures are
    /// retried with backoff, the last good token kept while it is valid.
    pub(super) async fn keep_fresh(self: Arc<Self>, cancel: CancellationToken) {
        let provider = tokio::select! {
            _ = cancel.cancelled() => return,
            p = self.credentials() => p,
        };
        let provider = match provider {
            Ok(p) => p,
            Err(e) => {
                warn!(route = %self.route, error = %e, "aws_msk_iam: cannot sign in");
                self.status.send_replace(Status::Failed(e));
                return;
            }
        };
        let mut retry = Duration::from_secs(1);
        loop {
            let next = match self.renew(&provider).await {
                Ok(token) => {
                    retry = Duration::from_secs(1);
                    let left = (token.expires_ms - epoch_ms(SystemTime::now())).max(0);
                    // Well before the token (or the credentials under it) expires.
                    RESIGN_EVERY
                        .min(Duration::from_millis(left as u64 * 2 / 3))
                        .max(Duration::from_secs(1))
                }
                Err(e) => {
                    warn!(route = %self.route, error = %e, retry_in = ?retry, "aws_msk_iam: cannot sign in");
                    self.status.send_replace(Status::Failed(e));
                    let r = retry;
                    retry = (retry * 2).min(MAX_RETRY);
                    r
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(next) => {}
            }
        }
    }

    async fn renew(&self, provider: &SharedCredentialsProvider) -> Result<Token, String> {
        let result = async {
            let creds = provider
                .provide_credentials()
                .await
                .map_err(|e| format!("no AWS credentials: {}", error_chain(&e)))?;
            sign_token(&creds, &self.region, SystemTime::now())
        }
        .await;
        self.metrics.login_refreshed(result.is_ok());
        let token = result?;
        if self.kept.lock().is_none() {
            info!(route = %self.route, region = %self.region, "aws_msk_iam: signed in");
        }
        self.metrics.login_expiry.set(token.expires_ms / 1000);
        *self.kept.lock() = Some(token.clone());
        self.status.send_replace(Status::Ready);
        Ok(token)
    }

    /// A token valid for a while yet, for librdkafka's refresh callback.
    fn current(&self) -> Result<Token, String> {
        let now = epoch_ms(SystemTime::now());
        if let Some(t) = self.kept.lock().as_ref() {
            if t.expires_ms - now > MIN_REMAINING.as_millis() as i64 {
                return Ok(t.clone());
            }
        }
        Err(match &*self.status.borrow() {
            Status::Failed(e) => format!("aws_msk_iam: {e}"),
            _ => "aws_msk_iam: no token signed yet".into(),
        })
    }

    /// Wait for a sign-in: `Ok` while a kept token is valid, else once one is signed;
    /// the sign-in error (as the source being unavailable) if the last attempt failed.
    pub(super) async fn ready(&self) -> Result<(), SourceError> {
        let mut rx = self.status.subscribe();
        loop {
            // A kept token still valid will do, whatever the last renewal said.
            if self.current().is_ok() {
                return Ok(());
            }
            match &*rx.borrow_and_update() {
                Status::Ready => return Ok(()),
                Status::Failed(e) => {
                    return Err(SourceError::Unavailable(format!("aws_msk_iam: {e}")))
                }
                Status::Starting => {}
            }
            if rx.changed().await.is_err() {
                return Err(SourceError::Unavailable("aws_msk_iam: stopped".into()));
            }
        }
    }
}

/// An error with its sources, `a: b: c` (the SDK's top-level messages say little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The context of every librdkafka client of a Kafka source: hands out the MSK IAM
/// token when the route signs in with IAM (librdkafka asks only when `sasl.mechanism`
/// is OAUTHBEARER without its built-in OIDC method).
#[derive(Clone, Default)]
pub(super) struct KafkaContext {
    pub iam: Option<Arc<MskIam>>,
}

impl ClientContext for KafkaContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let Some(iam) = &self.iam else {
            return Err(
                "sasl.mechanism=OAUTHBEARER needs sasl.oauthbearer.method=oidc or aws_msk_iam"
                    .into(),
            );
        };
        let t = iam.current()?;
        Ok(OAuthToken {
            token: t.value,
            principal_name: String::new(),
            lifetime_ms: t.expires_ms,
        })
    }
}

impl ConsumerContext for KafkaContext {}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some("session-token/with+chars=".into()),
            None,
            "test",
        )
    }

    fn decode(t: &str) -> String {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t)
            .unwrap();
        String::from_utf8(raw).unwrap()
    }

    fn query(url: &str) -> Vec<(String, String)> {
        let (_, q) = url.split_once('?').unwrap();
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    }

    /// A token AWS's own signer made (aws-msk-iam-sasl-signer-python 1.0.2 with botocore,
    /// the same credentials, region and time `2026-01-01T00:00:00Z`): same signature,
    /// same signed parameters, same expiry.
    #[test]
    fn token_matches_aws_signer() {
        let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let t = sign_token(&creds(), "us-east-1", now).unwrap();
        assert_eq!(t.expires_ms, 1_767_226_500_000);
        let url = decode(&t.value);
        assert!(
            url.starts_with("https://kafka.us-east-1.amazonaws.com/?"),
            "{url}"
        );
        let aws = decode(
            "aHR0cHM6Ly9rYWZrYS51cy1lYXN0LTEuYW1hem9uYXdzLmNvbS8_QWN0aW9uPWthZmthLWNsdXN0ZXIlM0FDb25uZWN0JlgtQW16LUFsZ29yaXRobT1BV1M0LUhNQUMtU0hBMjU2JlgtQW16LUNyZWRlbnRpYWw9QUtJREVYQU1QTEUlMkYyMDI2MDEwMSUyRnVzLWVhc3QtMSUyRmthZmthLWNsdXN0ZXIlMkZhd3M0X3JlcXVlc3QmWC1BbXotRGF0ZT0yMDI2MDEwMVQwMDAwMDBaJlgtQW16LUV4cGlyZXM9OTAwJlgtQW16LVNpZ25lZEhlYWRlcnM9aG9zdCZYLUFtei1TZWN1cml0eS1Ub2tlbj1zZXNzaW9uLXRva2VuJTJGd2l0aCUyQmNoYXJzJTNEJlgtQW16LVNpZ25hdHVyZT0zOWVmY2IyZGY0MWM4YTY2ZDRhMTMwYWQzODNmMmQ4MzBhYzNhYWIwODZiZjAyNDI0MGI4MmM1YjRlMWEzN2M1JlVzZXItQWdlbnQ9YXdzLW1zay1pYW0tc2FzbC1zaWduZXItcHl0aG9uJTJGMS4wLjI",
        );
        let strip_agent = |u: &str| {
            let mut q = query(u);
            q.retain(|(k, _)| k != "User-Agent");
            q.sort();
            q
        };
        assert_eq!(strip_agent(&url), strip_agent(&aws));
        assert!(strip_agent(&url).contains(&(
            "X-Amz-Signature".into(),
            "39efcb2df41c8a66d4a130ad383f2d830ac3aab086bf024240b82c5b4e1a37c5".into()
        )));
        let agent = query(&url).into_iter().find(|(k, _)| k == "User-Agent");
        assert_eq!(
            agent.map(|(_, v)| v),
            Some(format!("sse-bridge/{}", env!("CARGO_PKG_VERSION")))
        );
    }

    #[test]
    fn token_expires_with_its_credentials() {
        let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let short = Credentials::new("A", "S", None, Some(now + Duration::from_secs(60)), "t");
        let t = sign_token(&short, "eu-west-1", now).unwrap();
        assert_eq!(t.expires_ms, 1_767_225_660_000);
        let url = decode(&t.value);
        assert!(!url.contains("X-Amz-Security-Token"), "{url}");
        assert!(url.contains("%2Feu-west-1%2Fkafka-cluster%2F"), "{url}");
    }

    #[test]
    fn region_from_broker_names() {
        let b = |s: &str| region_of_broker(s);
        assert_eq!(
            b("b-1.demo.abc123.c2.kafka.eu-west-1.amazonaws.com:9098").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            b("boot-xyz.c1.kafka-serverless.us-east-2.amazonaws.com:9098"),
            None,
            "serverless names end in kafka-serverless, not kafka"
        );
        assert_eq!(b("kafka.local:9092"), None);
        assert_eq!(b("b-1.x.kafka.amazonaws.com:9098"), None);
        let cfg = MskIamConfig::default();
        assert_eq!(
            cfg.region(&["b-2.c.kafka.ap-south-1.amazonaws.com:9098".into()])
                .as_deref(),
            Some("ap-south-1")
        );
    }

    #[test]
    fn validation_names_the_field() {
        let brokers = vec!["localhost:9092".to_string()];
        let mut props = std::collections::BTreeMap::new();
        props.insert("sasl.mechanism".to_string(), "SCRAM-SHA-512".to_string());
        props.insert("security.protocol".to_string(), "sasl_ssl".to_string());
        let cfg = MskIamConfig {
            region: Some("EU_WEST".into()),
            role_arn: Some("role/x".into()),
            ..Default::default()
        };
        let mut p = Problems::default();
        cfg.validate(&brokers, &props, "routes[0].source", &mut p);
        let text = crate::problems::ConfigError::from(p).to_string();
        assert!(
            text.contains("routes[0].source.aws_msk_iam.region"),
            "{text}"
        );
        assert!(
            text.contains("routes[0].source.aws_msk_iam.role_arn"),
            "{text}"
        );
        assert!(
            text.contains("routes[0].source.properties.\"sasl.mechanism\""),
            "{text}"
        );
        assert!(!text.contains("security.protocol"), "{text}");
    }

    /// A route's login in eu-west-1, not started.
    fn login() -> Arc<MskIam> {
        let metrics = crate::metrics::Metrics::new(prometheus::Registry::new())
            .unwrap()
            .route("r");
        let cfg = MskIamConfig {
            region: Some("eu-west-1".into()),
            ..Default::default()
        };
        MskIam::new("r", &cfg, &[], metrics)
    }

    #[test]
    fn callback_hands_out_only_a_fresh_token() {
        let iam = login();
        let ctx = KafkaContext {
            iam: Some(iam.clone()),
        };
        let Err(err) = ctx.generate_oauth_token(None) else {
            panic!("a token before any was signed")
        };
        let err = err.to_string();
        assert!(err.contains("no token signed yet"), "{err}");
        *iam.kept.lock() = Some(Token {
            value: "t".into(),
            expires_ms: epoch_ms(SystemTime::now()) + 10_000,
        });
        assert!(ctx.generate_oauth_token(None).is_err(), "about to expire");
        *iam.kept.lock() = Some(Token {
            value: "t".into(),
            expires_ms: epoch_ms(SystemTime::now()) + 600_000,
        });
        let t = ctx.generate_oauth_token(None).unwrap();
        assert_eq!(t.token, "t");
        assert!(KafkaContext::default().generate_oauth_token(None).is_err());
    }

    #[tokio::test]
    async fn a_failed_renewal_keeps_the_route_up_while_the_kept_token_is_valid() {
        let iam = login();
        iam.status.send_replace(Status::Failed("sts down".into()));
        let err = iam.ready().await.unwrap_err().to_string();
        assert!(err.contains("sts down"), "{err}");
        *iam.kept.lock() = Some(Token {
            value: "t".into(),
            expires_ms: epoch_ms(SystemTime::now()) + 600_000,
        });
        assert!(iam.ready().await.is_ok());
    }
}
