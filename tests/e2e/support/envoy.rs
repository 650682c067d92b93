//! A real Envoy process with a rendered bootstrap: one loopback listener (path normalization
//! on), optionally the wasm filter, the router, and the `jwks` and `kserve` clusters.
//!
//! Every instance binds its listener and admin to port 0 (the kernel picks; the admin address
//! is read from `--admin-address-path`, the listener's from admin `/listeners`), runs with
//! `--disable-hot-restart` so parallel instances share no base id or shared memory, and logs to
//! a file in its own temporary directory. Dropping the value kills the process, also while a
//! failing test unwinds; the directory is kept (and its path printed) when a test panics or
//! when `KSERVE_E2E_KEEP` is set.

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::http::{self, Response};

/// Root id and VM id of the plugin, and the name Envoy reports it under.
pub const PLUGIN_NAME: &str = "kserve_auth";

/// Set this variable to keep every instance's directory (bootstrap, logs) for inspection.
pub const KEEP_VAR: &str = "KSERVE_E2E_KEEP";

/// How long Envoy gets to become ready (V8 compiles the module at start; CI cores are shared).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The Envoy binary: `$ENVOY_BIN`, else `<crate>/.venv/envoy/bin/envoy` (`make envoy`).
pub fn envoy_bin() -> PathBuf {
    existing(
        "ENVOY_BIN",
        Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/envoy/bin/envoy"),
        "run `make envoy` (or set ENVOY_BIN to an Envoy 1.40 binary)",
    )
}

/// The filter module: `$FILTER_WASM`, else the crate's release wasm (`make build`).
pub fn filter_wasm() -> PathBuf {
    existing(
        "FILTER_WASM",
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/kserve_auth_filter.wasm"),
        "run `make build` (or set FILTER_WASM to the built kserve_auth_filter.wasm)",
    )
}

pub fn existing(var: &str, fallback: PathBuf, hint: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or(fallback);
    assert!(
        path.is_file(),
        "{} not found (from {var} or its default): {hint}",
        path.display()
    );
    path
}

/// The wasm HTTP filter to insert before the router.
#[derive(Debug, Clone)]
pub struct WasmFilter {
    /// The `.wasm` file.
    pub module: PathBuf,
    /// The plugin configuration (JSON text), passed as a `google.protobuf.StringValue`.
    pub configuration: String,
    /// `allow_on_headers_stop_iteration`: true as shipped; false as an Istio `WasmPlugin` leaves
    /// it.
    pub hold_headers: bool,
}

/// What to render into the bootstrap.
#[derive(Debug, Clone)]
pub struct EnvoyConfig {
    /// `None` runs a plain Envoy (listener → router), used to check the harness itself.
    pub filter: Option<WasmFilter>,
    /// Port of the `jwks` cluster's endpoint.
    pub jwks_port: u16,
    /// Port of the `kserve` cluster's endpoint.
    pub upstream_port: u16,
    /// Worker threads.
    pub concurrency: u32,
    /// Envoy's log level for the `wasm` component (the plugin's own log lines).
    pub wasm_log_level: &'static str,
}

impl EnvoyConfig {
    /// The filter built by this crate with `configuration`, one worker.
    pub fn with_filter(configuration: &Value, jwks_port: u16, upstream_port: u16) -> EnvoyConfig {
        EnvoyConfig {
            filter: Some(WasmFilter::new(configuration)),
            jwks_port,
            upstream_port,
            concurrency: 1,
            wasm_log_level: "debug",
        }
    }

    /// No wasm filter at all.
    pub fn plain(jwks_port: u16, upstream_port: u16) -> EnvoyConfig {
        EnvoyConfig {
            filter: None,
            jwks_port,
            upstream_port,
            concurrency: 1,
            wasm_log_level: "debug",
        }
    }

    /// The bootstrap as JSON (Envoy reads it as YAML or JSON alike).
    pub fn bootstrap(&self) -> Value {
        let http_filters: Vec<Value> = self.filter.iter().map(WasmFilter::http_filter).collect();
        json!({
            "admin": {"address": loopback(0)},
            "static_resources": {
                "listeners": [upstream_listener("main", http_filters)],
                "clusters": upstream_clusters(self.jwks_port, self.upstream_port),
            },
        })
    }
}

/// A loopback listener on a kernel-chosen port (path normalization on) running `http_filters`
/// (the router is appended) in front of the `kserve` cluster.
pub fn upstream_listener(name: &str, http_filters: Vec<Value>) -> Value {
    http_listener(
        name,
        json!({
            "stat_prefix": "ingress",
            // HTTP/1.1, and HTTP/2 with prior knowledge as gRPC clients send it.
            "codec_type": "AUTO",
            "normalize_path": true,
            "merge_slashes": true,
            "path_with_escaped_slashes_action": "REJECT_REQUEST",
            "route_config": {"virtual_hosts": [{
                "name": "kserve",
                "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "kserve"}}],
            }]},
        }),
        http_filters,
    )
}

/// A loopback listener on a kernel-chosen port with one HTTP connection manager: `settings`
/// (stat prefix, codec, normalization, routes) plus `http_filters` with the router appended.
fn http_listener(name: &str, mut settings: Value, mut http_filters: Vec<Value>) -> Value {
    http_filters.push(router_http_filter());
    settings["@type"] = json!("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager");
    settings["http_filters"] = json!(http_filters);
    json!({
        "name": name,
        "address": loopback(0),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": settings,
        }]}],
    })
}

/// The `jwks` and `kserve` clusters, each with one loopback endpoint.
pub fn upstream_clusters(jwks_port: u16, upstream_port: u16) -> Vec<Value> {
    vec![cluster("jwks", jwks_port), cluster("kserve", upstream_port)]
}

impl WasmFilter {
    /// The filter built by this crate ([`filter_wasm`]) with `configuration`.
    pub fn new(configuration: &Value) -> WasmFilter {
        WasmFilter {
            module: filter_wasm(),
            configuration: configuration.to_string(),
            hold_headers: true,
        }
    }

    /// The `envoy.filters.http.wasm` entry of an `http_filters` list.
    pub fn http_filter(&self) -> Value {
        json!({
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": PLUGIN_NAME,
                    "root_id": PLUGIN_NAME,
                    // As the shipped configurations: a VM that fails is reloaded, and the reload
                    // is counted in `wasm.<plugin>.vm_reload*`, which every teardown checks.
                    "failure_policy": "FAIL_RELOAD",
                    // As the shipped configurations: the filter holds a request's headers while
                    // it reads a body that names the model (Envoy 1.35 and later).
                    "allow_on_headers_stop_iteration": self.hold_headers,
                    "configuration": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": self.configuration,
                    },
                    "vm_config": {
                        "vm_id": PLUGIN_NAME,
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": {"local": {"filename": self.module.display().to_string()}},
                    },
                },
            },
        })
    }
}

/// The router, last in every `http_filters` list.
pub fn router_http_filter() -> Value {
    json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    })
}

/// A loopback listener on a kernel-chosen port running `http_filters` (the router is appended)
/// in front of a single route that answers `200` directly, so no upstream is needed.
pub fn direct_response_listener(name: &str, http_filters: Vec<Value>) -> Value {
    http_listener(
        name,
        json!({
            "stat_prefix": name,
            "normalize_path": true,
            "merge_slashes": true,
            "route_config": {"virtual_hosts": [{
                "name": name,
                "domains": ["*"],
                "routes": [{
                    "match": {"prefix": "/"},
                    "direct_response": {"status": 200, "body": {"inline_string": "model"}},
                }],
            }]},
        }),
        http_filters,
    )
}

/// A bootstrap with only these listeners (no clusters) and the admin interface on loopback;
/// start it with [`Envoy::try_start_bootstrap`] and find each listener with
/// [`Envoy::listener_addr`].
pub fn bootstrap_with_listeners(listeners: Vec<Value>) -> Value {
    json!({
        "admin": {"address": loopback(0)},
        "static_resources": {"listeners": listeners},
    })
}

fn loopback(port: u16) -> Value {
    json!({"socket_address": {"address": "127.0.0.1", "port_value": port}})
}

/// wrk: `$WRK`, else `wrk` on `PATH` (`make wrk` installs it).
pub fn wrk_bin() -> PathBuf {
    if let Some(wrk) = std::env::var_os("WRK").filter(|v| !v.is_empty()) {
        return PathBuf::from(wrk);
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("wrk"))
                .find(|candidate| candidate.is_file())
        })
        .expect("wrk not found (set WRK or run `make wrk`)")
}

/// A static cluster `name` with one loopback endpoint on `port`.
pub fn cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": loopback(port)}}]}],
        },
    })
}

/// Why Envoy did not become ready.
#[derive(Debug)]
pub struct StartFailure {
    /// The exit status, or `None` if it was still running at the deadline (then killed).
    pub status: Option<ExitStatus>,
    /// Everything Envoy logged.
    pub log: String,
}

/// A running Envoy.
pub struct Envoy {
    child: Child,
    dir: PathBuf,
    admin: SocketAddr,
    listener: SocketAddr,
    /// The watched listener file and the version last written to it, for Envoys started with
    /// [`Envoy::start_with_listener_file`].
    listener_file: Option<(PathBuf, AtomicU64)>,
}

static INSTANCE: AtomicUsize = AtomicUsize::new(0);

fn fresh_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kserve-e2e-{}-{}",
        std::process::id(),
        INSTANCE.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create Envoy temp dir");
    dir
}

impl Envoy {
    /// Starts Envoy and waits until its listener is up; panics with the log tail otherwise.
    pub fn start(config: &EnvoyConfig) -> Envoy {
        ready(Envoy::try_start(config))
    }

    /// [`Envoy::try_start_bootstrap`] that panics with the log tail when Envoy does not become
    /// ready.
    pub fn start_bootstrap(
        file_name: &str,
        text: &str,
        concurrency: u32,
        wasm_log_level: &str,
    ) -> Envoy {
        ready(Envoy::try_start_bootstrap(
            file_name,
            text,
            concurrency,
            wasm_log_level,
        ))
    }

    /// Starts Envoy; `Err` if it exits or is not ready within the timeout.
    pub fn try_start(config: &EnvoyConfig) -> Result<Envoy, StartFailure> {
        let text = serde_json::to_string_pretty(&config.bootstrap()).expect("render bootstrap");
        Envoy::try_start_bootstrap(
            "bootstrap.json",
            &text,
            config.concurrency,
            config.wasm_log_level,
        )
    }

    /// Starts Envoy from a bootstrap given as text (`file_name` decides YAML or JSON). The first
    /// listener Envoy reports is the one [`Envoy::addr`] returns.
    pub fn try_start_bootstrap(
        file_name: &str,
        text: &str,
        concurrency: u32,
        wasm_log_level: &str,
    ) -> Result<Envoy, StartFailure> {
        let dir = fresh_dir();
        let bootstrap = dir.join(file_name);
        fs::write(&bootstrap, text).expect("write bootstrap");
        Envoy::launch(dir, &bootstrap, concurrency, wasm_log_level, &[], None)
    }

    /// Starts Envoy with `static_resources` (clusters) and its listeners read from a file in its
    /// directory that Envoy watches (LDS from the filesystem), holding `listeners` at first;
    /// [`Envoy::set_listeners`] replaces them while Envoy runs. `extra_args` go to the command
    /// line (for example `--drain-time-s`). Panics with the log tail if Envoy does not come up.
    pub fn start_with_listener_file(
        static_resources: Value,
        listeners: &[Value],
        concurrency: u32,
        extra_args: &[&str],
    ) -> Envoy {
        assert!(
            !listeners.is_empty(),
            "Envoy is ready only once a listener is up"
        );
        let dir = fresh_dir();
        let lds = dir.join("lds");
        fs::create_dir_all(&lds).expect("create listener directory");
        let file = lds.join("listeners.json");
        write_listener_file(&file, listeners, 1);
        let bootstrap = json!({
            // Envoy requires a node identity for any xDS subscription, files included.
            "node": {"id": "e2e", "cluster": "e2e"},
            "admin": {"address": loopback(0)},
            "static_resources": static_resources,
            "dynamic_resources": {"lds_config": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": file.display().to_string(),
                    "watched_directory": {"path": lds.display().to_string()},
                },
            }},
        });
        let path = dir.join("bootstrap.json");
        fs::write(&path, bootstrap.to_string()).expect("write bootstrap");
        let listener_file = Some((file, AtomicU64::new(1)));
        Envoy::launch(dir, &path, concurrency, "debug", extra_args, listener_file).unwrap_or_else(
            |failure| {
                panic!(
                    "Envoy did not become ready (exit status {:?}); log tail:\n{}",
                    failure.status,
                    tail(&failure.log, 40)
                )
            },
        )
    }

    /// Replaces every listener with `listeners` (none removes them all) the way a control plane
    /// pushes LDS: the new file is written under a temporary name and renamed over the watched
    /// one. Returns once Envoy accepted the update and no listener is warming; panics if it
    /// rejected it.
    pub fn set_listeners(&self, listeners: &[Value]) {
        let (file, version) = self
            .listener_file
            .as_ref()
            .expect("Envoy was not started with a listener file");
        let stat = |name: &str| {
            self.counter(&format!("listener_manager.lds.{name}"))
                .unwrap_or(0)
        };
        let (accepted, rejected) = (stat("update_success"), stat("update_rejected"));
        let version = version.fetch_add(1, Ordering::SeqCst) + 1;
        write_listener_file(file, listeners, version);
        let outcome = poll(Duration::from_secs(10), || {
            if stat("update_rejected") > rejected {
                Some(false)
            } else {
                (stat("update_success") > accepted).then_some(true)
            }
        });
        assert_eq!(
            outcome,
            Some(true),
            "Envoy did not take listeners version {version}; log tail:\n{}",
            tail(&self.log(), 30)
        );
        let warm = poll(Duration::from_secs(10), || {
            (self.counter("listener_manager.total_listeners_warming") == Some(0)).then_some(())
        });
        assert!(warm.is_some(), "a listener is still warming");
    }

    /// Whether admin `/ready` answers `200 LIVE`.
    pub fn is_ready(&self) -> bool {
        http::request(self.admin, "GET", "/ready", &[], None)
            .is_ok_and(|r| r.status == 200 && r.text().trim() == "LIVE")
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn launch(
        dir: PathBuf,
        bootstrap: &Path,
        concurrency: u32,
        wasm_log_level: &str,
        extra_args: &[&str],
        listener_file: Option<(PathBuf, AtomicU64)>,
    ) -> Result<Envoy, StartFailure> {
        let admin_file = dir.join("admin-address");
        // Envoy's own log goes to stderr, which is unbuffered; `--log-path` would buffer lines
        // for up to 10 s (the file flush interval) and tests read the log while Envoy runs.
        let stderr = fs::File::create(dir.join("envoy.log")).expect("create envoy.log");
        let stdout = fs::File::create(dir.join("stdout.log")).expect("create stdout.log");
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(bootstrap)
            .args(["--concurrency", &concurrency.to_string()])
            .arg("--disable-hot-restart")
            .arg("--admin-address-path")
            .arg(&admin_file)
            .args(["-l", "info"])
            .args(["--component-log-level", &format!("wasm:{wasm_log_level}")])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", envoy_bin().display()));
        // From here on Drop kills the process, whatever happens.
        let mut envoy = Envoy {
            child,
            dir,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            listener: SocketAddr::from(([127, 0, 0, 1], 0)),
            listener_file,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                return Err(StartFailure {
                    status: Some(status),
                    log: envoy.log(),
                });
            }
            if let Some((admin, listener)) = envoy.probe_ready(&admin_file) {
                envoy.admin = admin;
                envoy.listener = listener;
                return Ok(envoy);
            }
            if Instant::now() >= deadline {
                let _ = envoy.child.kill();
                let status = envoy.child.wait().ok();
                return Err(StartFailure {
                    status,
                    log: envoy.log(),
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Admin answers `/ready` with LIVE and reports the listener's bound address.
    fn probe_ready(&self, admin_file: &Path) -> Option<(SocketAddr, SocketAddr)> {
        let admin: SocketAddr = fs::read_to_string(admin_file).ok()?.trim().parse().ok()?;
        let ready = http::request(admin, "GET", "/ready", &[], None).ok()?;
        if ready.status != 200 || ready.text().trim() != "LIVE" {
            return None;
        }
        let listeners = http::request(admin, "GET", "/listeners", &[], None).ok()?;
        // Plain format: one `name::address` line per listener.
        let listener = listeners
            .text()
            .lines()
            .find_map(|line| line.split_once("::").map(|(_, addr)| addr.to_string()))?
            .trim()
            .parse::<SocketAddr>()
            .ok()?;
        (listener.port() != 0).then_some((admin, listener))
    }

    /// The listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.listener
    }

    /// The bound address of the listener called `name`, from admin `/listeners`.
    pub fn listener_addr(&self, name: &str) -> SocketAddr {
        self.try_listener_addr(name).unwrap_or_else(|| {
            let listeners = http::get(self.admin, "/listeners", &[]);
            panic!("no listener {name:?} in {:?}", listeners.text())
        })
    }

    /// The bound address of the listener called `name`, if Envoy has one by that name.
    pub fn try_listener_addr(&self, name: &str) -> Option<SocketAddr> {
        let listeners = http::get(self.admin, "/listeners", &[]);
        listeners.text().lines().find_map(|line| {
            let (listener, addr) = line.split_once("::")?;
            (listener == name).then(|| addr.trim().parse::<SocketAddr>().ok())?
        })
    }

    /// The admin interface's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// This instance's temporary directory (bootstrap, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Envoy process's resident set size in KiB (`VmRSS` in `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }

    /// `GET` through the listener.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        http::get(self.listener, path, headers)
    }

    /// Everything Envoy logged so far (its stderr, then its stdout).
    pub fn log(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}{}", read("envoy.log"), read("stdout.log"))
    }

    /// Polls the log until a line contains `needle`; returns the first such line.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        poll(timeout, || {
            self.log()
                .lines()
                .find(|line| line.contains(needle))
                .map(str::to_string)
        })
    }

    /// Counters and gauges from admin `/stats` whose names match `filter` (a regex).
    pub fn stats(&self, filter: &str) -> BTreeMap<String, u64> {
        let response = http::get(self.admin, &format!("/stats?filter={filter}"), &[]);
        assert_eq!(response.status, 200, "admin /stats: {}", response.text());
        response
            .text()
            .lines()
            .filter_map(|line| {
                let (name, value) = line.rsplit_once(": ")?;
                Some((name.trim().to_string(), value.trim().parse().ok()?))
            })
            .collect()
    }

    /// One counter's value (`None` if Envoy does not know the name).
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.stats(&regex_escape(name)).get(name).copied()
    }

    /// One gauge's value (`None` if Envoy does not know the name).
    pub fn gauge(&self, name: &str) -> Option<u64> {
        self.counter(name)
    }

    /// Polls a counter until it reaches `at_least`; returns the last value seen.
    pub fn wait_for_counter(&self, name: &str, at_least: u64, timeout: Duration) -> Option<u64> {
        let mut last = None;
        poll(timeout, || {
            last = self.counter(name);
            last.is_some_and(|v| v >= at_least).then_some(())
        });
        last
    }
}

/// Log lines a wasm VM failure leaves: the panic message the SDK logs, and V8's report of a
/// trapped callback. (A refused configuration is not a VM failure: tests expect some.)
const VM_FAILURE_MARKS: [&str; 2] = ["panicked at", "Uncaught RuntimeError"];

impl Envoy {
    /// Why a wasm VM of this Envoy failed, if one did: a non-zero `wasm.*.vm_reload*` statistic
    /// (configurations with `failure_policy: FAIL_RELOAD` count every reload there) or a failure
    /// line in the log. Checked at every teardown, so no test passes while a VM crashed.
    pub fn vm_failure(&self) -> Option<String> {
        if let Ok(response) = http::request(self.admin, "GET", "/stats?filter=vm_reload", &[], None)
        {
            let moved: Vec<String> = response
                .text()
                .lines()
                .filter(|line| line.starts_with("wasm.") && !line.ends_with(": 0"))
                .map(str::to_string)
                .collect();
            if !moved.is_empty() {
                return Some(format!("VM reload statistics moved: {moved:?}"));
            }
        }
        let log = self.log();
        VM_FAILURE_MARKS.iter().find_map(|mark| {
            log.lines()
                .find(|line| line.contains(mark))
                .map(|line| format!("VM failure in Envoy's log: {line}"))
        })
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let failure = if thread::panicking() {
            None
        } else {
            self.vm_failure()
        };
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("Envoy files kept in {}", self.dir.display());
            eprintln!("Envoy log tail:\n{}", tail(&self.log(), 30));
        } else if std::env::var_os(KEEP_VAR).is_some() {
            eprintln!("Envoy files kept in {}", self.dir.display());
        } else if failure.is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
        if let Some(failure) = failure {
            panic!("{failure} (Envoy files kept in {})", self.dir.display());
        }
    }
}

/// The started Envoy, or a panic with why it did not become ready.
fn ready(started: Result<Envoy, StartFailure>) -> Envoy {
    started.unwrap_or_else(|failure| {
        panic!(
            "Envoy did not become ready (exit status {:?}); log tail:\n{}",
            failure.status,
            tail(&failure.log, 40)
        )
    })
}

/// Writes an LDS discovery response holding `listeners` to `file` through a temporary file in
/// the same directory, so Envoy, which watches the directory for renames, reads it whole.
fn write_listener_file(file: &Path, listeners: &[Value], version: u64) {
    let resources: Vec<Value> = listeners
        .iter()
        .map(|listener| {
            let mut resource = listener.clone();
            resource["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
            resource
        })
        .collect();
    let response = json!({"version_info": version.to_string(), "resources": resources});
    let temporary = file.with_extension("tmp");
    fs::write(&temporary, response.to_string()).expect("write listener file");
    fs::rename(&temporary, file).expect("move listener file into place");
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn regex_escape(name: &str) -> String {
    let mut out = String::from("^");
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() && c != '_' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('$');
    out
}

/// Calls `check` every 50 ms until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(50));
    }
}
