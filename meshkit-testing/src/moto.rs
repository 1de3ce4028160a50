//! The moto AWS emulator for tests: [`MotoServer`] starts moto's server on a free
//! loopback port (and stops it when dropped), with its known divergences from AWS
//! handled, and hands out an [`SdkConfig`] pointing at it. [`CallCounter`] counts the
//! AWS operations a client makes.
//!
//! Needs Python 3 with `moto[server]` installed (`./scripts/test.sh` installs it). Set
//! `MESHKIT_PYTHON` to use another interpreter than `python3`, and `MESHKIT_MOTO_LOG`
//! to a file path to keep the emulator's log (request lines and tracebacks).

use std::fmt;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::behavior_version::BehaviorVersion;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::retry::RetryConfig;
use aws_types::SdkConfig;
use aws_types::region::Region;

const SCRIPT: &str = include_str!("moto_server.py");
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the emulator did not start.
#[derive(Debug)]
pub enum MotoError {
    /// Python or moto is missing.
    NotInstalled {
        /// The interpreter tried.
        python: String,
        /// What went wrong.
        detail: String,
    },
    /// The emulator did not report a port in time.
    NoPort(String),
}

impl fmt::Display for MotoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInstalled { python, detail } => write!(
                f,
                "the moto AWS emulator is not available to `{python}` ({detail}). \
                 Run ./scripts/test.sh, which installs it, or `{python} -m pip install \
                 'moto[server]'`; set MESHKIT_PYTHON to use another interpreter"
            ),
            Self::NoPort(detail) => write!(f, "the moto AWS emulator did not start: {detail}"),
        }
    }
}

impl std::error::Error for MotoError {}

/// A running moto server on `127.0.0.1`, stopped on drop. Each server has its own empty
/// state, so tests do not share resources.
pub struct MotoServer {
    child: Child,
    _stdin: ChildStdin,
    endpoint: String,
}

impl fmt::Debug for MotoServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MotoServer")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl MotoServer {
    /// Starts an emulator.
    pub fn start() -> Result<Self, MotoError> {
        Self::start_with_env(&[])
    }

    /// Starts an emulator with extra environment variables (moto reads a few, such as
    /// `MOTO_ECS_SERVICE_RUNNING`; meshkit's ECS service-deployment extension reads
    /// `MESHKIT_ECS_MINUTE_SECONDS`, how long one ECS minute of bakes and hook
    /// timeouts lasts, default 60).
    pub fn start_with_env(env: &[(&str, &str)]) -> Result<Self, MotoError> {
        let python = std::env::var("MESHKIT_PYTHON").unwrap_or_else(|_| "python3".into());
        let not_installed = |detail: String| MotoError::NotInstalled {
            python: python.clone(),
            detail,
        };
        let mut child = Command::new(&python)
            .arg("-c")
            .arg(SCRIPT)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_to())
            .spawn()
            .map_err(|e| not_installed(format!("cannot run it: {e}")))?;
        let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
            (Some(i), Some(o)) => (i, o),
            _ => return Err(MotoError::NoPort("no pipes to the emulator".into())),
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                return Err(MotoError::NoPort(format!(
                    "no port reported within {START_TIMEOUT:?}"
                )));
            }
        };
        let line = line.trim();
        if let Some(detail) = line.strip_prefix("MESHKIT_MOTO_MISSING ") {
            let _ = child.wait();
            return Err(not_installed(detail.to_string()));
        }
        let Some(port) = line
            .strip_prefix("MESHKIT_MOTO_PORT ")
            .and_then(|p| p.parse::<u16>().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(MotoError::NoPort(format!("unexpected output {line:?}")));
        };
        Ok(Self {
            child,
            _stdin: stdin,
            endpoint: format!("http://127.0.0.1:{port}"),
        })
    }

    /// The emulator's URL, for `endpoint_url`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// An SDK configuration for the emulator: region `us-east-1`, fixed test
    /// credentials, plain HTTP, and SDK retries off so tests see every call.
    pub fn sdk_config(&self) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::v2026_01_12())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "meshkit-testing",
            )))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .retry_config(RetryConfig::disabled())
            .build()
    }
}

impl MotoServer {
    /// The operations the emulator served, in order (`DescribeRoute`, `UpdateRoute`,
    /// `GetMetricData`, ...), from every client and process: a test extension of the
    /// emulator wrapper, not an AWS API. Panics when the emulator does not answer: it
    /// is for tests.
    pub fn requests(&self) -> Vec<String> {
        let body = self.extension("GET");
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("the emulator's request log is not JSON ({e}): {body}"))
    }

    /// Forgets the requests served so far.
    pub fn clear_requests(&self) {
        self.extension("DELETE");
    }

    fn extension(&self, method: &str) -> String {
        self.raw(method, "/_meshkit/requests", "", "")
    }

    /// Sends a raw AWS Query request (`Action=...&Version=...`) for `service` and
    /// returns the XML answer: for fixtures in services meshkit has no SDK client for
    /// (EC2's VPCs and subnets, which the emulator's load balancers need). The
    /// emulator does not check signatures; the credential scope names the service.
    pub fn query(&self, service: &str, body: &str) -> String {
        let auth = format!(
            "Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        );
        self.raw("POST", "/", &auth, body)
    }

    fn raw(&self, method: &str, path: &str, headers: &str, body: &str) -> String {
        use std::io::{Read, Write};
        let addr = self.endpoint.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr)
            .unwrap_or_else(|e| panic!("cannot reach the emulator at {addr}: {e}"));
        let request = format!(
            "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(request.as_bytes())
            .unwrap_or_else(|e| panic!("cannot ask the emulator: {e}"));
        let mut response = String::new();
        s.read_to_string(&mut response)
            .unwrap_or_else(|e| panic!("no answer from the emulator: {e}"));
        match response.split_once("\r\n\r\n") {
            Some((_, body)) => body.to_string(),
            None => panic!("malformed answer from the emulator: {response}"),
        }
    }
}

/// The emulator's log: the file named by `MESHKIT_MOTO_LOG`, else nowhere.
fn log_to() -> Stdio {
    std::env::var_os("MESHKIT_MOTO_LOG")
        .and_then(|path| std::fs::File::create(path).ok())
        .map_or_else(Stdio::null, Stdio::from)
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counts the AWS operations made by clients it is installed on (one per operation,
/// whatever the retries). Add it with the service config's `interceptor(..)`.
#[derive(Debug, Clone, Default)]
pub struct CallCounter {
    calls: Arc<Mutex<Vec<String>>>,
}

impl CallCounter {
    /// A counter with no calls.
    pub fn new() -> Self {
        Self::default()
    }

    /// Operation names in call order, e.g. `["DescribeRoute", "UpdateRoute"]`.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// How many calls were made to `operation`.
    pub fn count(&self, operation: &str) -> usize {
        self.calls().iter().filter(|c| *c == operation).count()
    }

    /// Forgets the calls so far.
    pub fn clear(&self) {
        if let Ok(mut c) = self.calls.lock() {
            c.clear();
        }
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "meshkit-testing CallCounter"
    }

    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let name = cfg
            .load::<Metadata>()
            .map(|m| m.name().to_string())
            .unwrap_or_else(|| "unknown".into());
        if let Ok(mut c) = self.calls.lock() {
            c.push(name);
        }
        Ok(())
    }
}
