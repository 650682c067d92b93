//! The demo's real parts as test fixtures: the OpenID provider (`demo/op/server.mjs`, npm
//! oidc-provider), the KServe model server (`demo/model/model.py`) and Envoy rendered from
//! `envoy/demo.yaml`, each on loopback ports chosen at run time.
//!
//! Paths: `node` from PATH with `demo/op/node_modules` (`make op`), `$KSERVE_PYTHON` or
//! `.venv/kserve/bin/python` (`make kserve`). Every process is killed when its value drops,
//! also while a failing test unwinds, and its log tail is printed then.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use super::envoy::{filter_wasm, tail, Envoy, KEEP_VAR};
use super::http::{self, Response};
use super::server::free_port;

/// The client the provider knows.
pub const CLIENT_ID: &str = "demo-client";
/// Its secret.
pub const CLIENT_SECRET: &str = "demo-secret";
/// The model the model server serves.
pub const MODEL: &str = "demo-model";
/// V1 predict path through Envoy.
pub const V1_PREDICT: &str = "/v1/models/demo-model:predict";
/// V2 infer path through Envoy.
pub const V2_INFER: &str = "/v2/models/demo-model/infer";

/// The model server imports kserve (FastAPI, pandas, grpc...) before it listens; on two busy
/// cores that takes a while.
const MODEL_START_TIMEOUT: Duration = Duration::from_secs(90);
/// Node loads oidc-provider and makes its signing keys before it listens: a second normally, but
/// the suite starts several of them beside Keycloak and the model servers on two cores.
const OP_START_TIMEOUT: Duration = Duration::from_secs(90);

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The kserve venv's Python: `$KSERVE_PYTHON`, else `.venv/kserve/bin/python` (`make kserve`).
pub fn kserve_python() -> PathBuf {
    let path = std::env::var_os("KSERVE_PYTHON")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/kserve/bin/python"));
    assert!(
        path.is_file(),
        "{} not found: run `make kserve` (or set KSERVE_PYTHON)",
        path.display()
    );
    path
}

fn op_installed() {
    let package = repo().join("demo/op/node_modules/oidc-provider/package.json");
    assert!(
        package.is_file(),
        "{} not found: run `make op`",
        package.display()
    );
}

static INSTANCE: AtomicUsize = AtomicUsize::new(0);

/// A temporary directory for one fixture's files (key file, log), removed on drop unless a
/// test is failing or `KSERVE_E2E_KEEP` is set.
pub struct Scratch(PathBuf);

impl Scratch {
    /// A fresh, empty directory.
    pub fn new(what: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "kserve-demo-{what}-{}-{}",
            std::process::id(),
            INSTANCE.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if thread::panicking() || std::env::var_os(KEEP_VAR).is_some() {
            eprintln!("files kept in {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// A child process that is killed when dropped; its output goes to `<dir>/<name>.log`.
pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    /// Starts `command` with stdout and stderr in `<dir>/<name>.log`.
    pub fn spawn(name: &str, mut command: Command, dir: &Path) -> Process {
        let log = dir.join(format!("{name}.log"));
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open log");
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone log handle"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Process {
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("process running").id()
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().ok().flatten().is_some(),
            None => true,
        }
    }

    /// Everything it wrote so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (a name such as `HUP`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.name);
    }

    /// Kills it and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Polls `ready` every 50 ms until it is true; panics with the log tail if the process
    /// exits or `timeout` passes.
    pub fn wait_until(&mut self, timeout: Duration, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if ready() {
                return;
            }
            assert!(
                !self.exited(),
                "{} exited; log tail:\n{}",
                self.name,
                tail(&self.log(), 30)
            );
            assert!(
                Instant::now() < deadline,
                "{} not ready after {timeout:?}; log tail:\n{}",
                self.name,
                tail(&self.log(), 30)
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!(
                "{} log ({}) tail:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log(), 30)
            );
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The demo's OpenID provider, its signing keys in a file of its own.
pub struct OpenIdProvider {
    process: Process,
    port: u16,
    dir: Scratch,
}

impl OpenIdProvider {
    /// Starts a provider on a free port with a new key file.
    pub fn start() -> OpenIdProvider {
        let dir = Scratch::new("op");
        let port = free_port();
        let process = OpenIdProvider::spawn(dir.path(), port);
        OpenIdProvider { process, port, dir }
    }

    fn spawn(dir: &Path, port: u16) -> Process {
        op_installed();
        let mut command = Command::new("node");
        command
            .arg(repo().join("demo/op/server.mjs"))
            .args(["--port", &port.to_string()])
            .arg("--keys")
            .arg(dir.join("keys.json"));
        let mut process = Process::spawn("op", command, dir);
        let addr = loopback(port);
        process.wait_until(OP_START_TIMEOUT, || {
            http::request(addr, "GET", "/jwks", &[], None).is_ok_and(|r| r.status == 200)
        });
        process
    }

    /// Kills the provider (its port stops answering).
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Starts it again on the same port with the same key file.
    pub fn restart(&mut self) {
        self.process.stop();
        self.process = OpenIdProvider::spawn(self.dir.path(), self.port);
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything it logged (one line per token issued, with the client and the grant).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Its issuer URL.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The token endpoint's answer to a client credentials request with HTTP Basic auth.
    pub fn token_response(&self, client_id: &str, secret: &str) -> Response {
        self.token_response_with(client_id, secret, &[])
    }

    /// [`OpenIdProvider::token_response`] with extra request headers (a DPoP proof).
    pub fn token_response_with(
        &self,
        client_id: &str,
        secret: &str,
        extra: &[(&str, &str)],
    ) -> Response {
        let basic = format!("Basic {}", STANDARD.encode(format!("{client_id}:{secret}")));
        let host = self.host();
        let mut headers = vec![
            ("host", host.as_str()),
            ("authorization", basic.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        headers.extend_from_slice(extra);
        http::request(
            loopback(self.port),
            "POST",
            "/token",
            &headers,
            Some(b"grant_type=client_credentials"),
        )
        .unwrap_or_else(|e| panic!("POST /token failed: {e}"))
    }

    /// A fresh access token for the demo client.
    pub fn token(&self) -> String {
        let response = self.token_response(CLIENT_ID, CLIENT_SECRET);
        assert_eq!(response.status, 200, "token: {}", response.text());
        let body = response.json();
        assert_eq!(body["token_type"], "Bearer", "{body}");
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token: {body}"))
            .to_string()
    }

    /// A document the provider serves.
    pub fn get_json(&self, path: &str) -> Value {
        let host = self.host();
        let response = http::get(loopback(self.port), path, &[("host", host.as_str())]);
        assert_eq!(response.status, 200, "GET {path}: {}", response.text());
        response.json()
    }

    /// The kids the provider publishes at its JWKS URL, in order.
    pub fn published_kids(&self) -> Vec<String> {
        kids(&self.get_json("/jwks"))
    }

    /// The kids in its key file, signing key first.
    pub fn key_file_kids(&self) -> Vec<String> {
        let text = fs::read_to_string(self.dir.path().join("keys.json")).expect("read key file");
        kids(&serde_json::from_str(&text).expect("key file JSON"))
    }

    /// One rotation step (`add`, `promote` or `retire`, see demo/op/keys.mjs) applied to the key
    /// file and loaded with SIGHUP; returns once the provider publishes the new set.
    pub fn rotate(&self, step: &str) -> Vec<String> {
        let output = Command::new("node")
            .arg(repo().join("demo/op/keys.mjs"))
            .arg(step)
            .arg(self.dir.path().join("keys.json"))
            .output()
            .expect("run keys.mjs");
        assert!(
            output.status.success(),
            "keys.mjs {step}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let expected = self.key_file_kids();
        self.process.signal("HUP");
        let mut published = Vec::new();
        super::envoy::poll(Duration::from_secs(10), || {
            published = self.published_kids();
            (published == expected).then_some(())
        })
        .unwrap_or_else(|| panic!("after {step}: publishes {published:?}, file has {expected:?}"));
        expected
    }
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("not a JWKS: {jwks}"))
        .iter()
        .map(|key| key["kid"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The demo's KServe model server.
pub struct ModelServer {
    process: Process,
    port: u16,
    _dir: Scratch,
}

impl ModelServer {
    /// Starts `demo/model/model.py` on a free port and waits until the model is ready.
    pub fn start() -> ModelServer {
        let dir = Scratch::new("model");
        let port = free_port();
        let mut command = Command::new(kserve_python());
        command
            .arg(repo().join("demo/model/model.py"))
            .args(["--http_port", &port.to_string()]);
        let mut process = Process::spawn("model", command, dir.path());
        process.wait_until(MODEL_START_TIMEOUT, || {
            http::request(
                loopback(port),
                "GET",
                "/v2/models/demo-model/ready",
                &[],
                None,
            )
            .is_ok_and(|r| r.status == 200)
        });
        ModelServer {
            process,
            port,
            _dir: dir,
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything it logged.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// `envoy/demo.yaml` with its ports moved: the listener (and the resource identifier its
/// RFC 9728 metadata names) to `listener_port`, admin to 0 (the kernel picks), the provider and
/// model server to theirs, the module to the one under test, and the key cache duration to
/// `cache_duration` (`"600s"` as shipped).
pub fn demo_bootstrap(
    op: &OpenIdProvider,
    model: &ModelServer,
    listener_port: u16,
    cache_duration: &str,
) -> String {
    let path = repo().join("envoy/demo.yaml");
    let mut text = fs::read_to_string(&path).expect("read envoy/demo.yaml");
    let replacements = [
        (
            "port_value: 10000}".to_string(),
            format!("port_value: {listener_port}}}"),
        ),
        (
            "\"resource\": \"http://127.0.0.1:10000\"".into(),
            format!("\"resource\": \"http://127.0.0.1:{listener_port}\""),
        ),
        ("port_value: 9901}".into(), "port_value: 0}".into()),
        (
            "port_value: 9000}".into(),
            format!("port_value: {}}}", op.port()),
        ),
        (
            "port_value: 8080}".into(),
            format!("port_value: {}}}", model.port()),
        ),
        (
            "\"http://127.0.0.1:9000\"".into(),
            format!("\"{}\"", op.issuer()),
        ),
        (
            "\"cache_duration\": \"600s\"".into(),
            format!("\"cache_duration\": \"{cache_duration}\""),
        ),
        (
            "target/kserve_auth_filter.wasm".into(),
            filter_wasm().display().to_string(),
        ),
    ];
    for (from, to) in replacements {
        assert!(text.contains(&from), "envoy/demo.yaml no longer has {from}");
        text = text.replace(&from, &to);
    }
    text
}

/// The three demo processes.
pub struct DemoStack {
    /// Envoy, dropped (killed) first.
    pub envoy: Envoy,
    /// The model server behind cluster `kserve`.
    pub model: ModelServer,
    /// The provider behind cluster `oidc`.
    pub op: OpenIdProvider,
}

impl DemoStack {
    /// Provider, model server and Envoy from `envoy/demo.yaml` with `cache_duration`; provider
    /// and model server start side by side.
    pub fn start(cache_duration: &str) -> DemoStack {
        let model = thread::spawn(ModelServer::start);
        let op = OpenIdProvider::start();
        let model = model
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        let bootstrap = demo_bootstrap(&op, &model, free_port(), cache_duration);
        let envoy = Envoy::try_start_bootstrap("demo.yaml", &bootstrap, 1, "debug")
            .unwrap_or_else(|f| panic!("envoy/demo.yaml did not start: {}", tail(&f.log, 40)));
        DemoStack { envoy, model, op }
    }

    /// `POST path` through Envoy with a JSON body and an optional bearer token.
    pub fn post(&self, path: &str, token: Option<&str>, body: &str) -> Response {
        self.post_with(path, token, &[], body)
    }

    /// Like [`DemoStack::post`] with extra headers.
    pub fn post_with(
        &self,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
        body: &str,
    ) -> Response {
        let authorization = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        if let Some(value) = &authorization {
            headers.push(("authorization", value.as_str()));
        }
        headers.extend_from_slice(extra);
        http::request(
            self.envoy.addr(),
            "POST",
            path,
            &headers,
            Some(body.as_bytes()),
        )
        .unwrap_or_else(|e| panic!("POST {path} through Envoy failed: {e}"))
    }

    /// The resource identifier Envoy's RFC 9728 metadata names: its listener's URL.
    pub fn resource(&self) -> String {
        format!("http://{}", self.envoy.addr())
    }

    /// A V1 predict of one instance `[1, 2, 3]`.
    pub fn predict(&self, token: Option<&str>) -> Response {
        self.post(V1_PREDICT, token, r#"{"instances": [[1, 2, 3]]}"#)
    }
}
