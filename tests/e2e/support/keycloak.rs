//! A real Keycloak (the server distribution `make keycloak` installs), started once per test
//! binary in dev mode on a free loopback port, importing `envoy/compose/kserve-realm.json` as
//! shipped, with its database in a folder of this run.
//!
//! Keycloak takes tens of seconds to start on two cores, so every test shares the one instance.
//! No test harness hook runs when the binary ends, so a watchdog shell started with it stops it
//! (and removes its folder) as soon as the test process is gone.

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use super::demo::repo;
use super::envoy::tail;
use super::http;
use super::server::free_port;

/// How long Keycloak may take to start and import the realm.
const START_TIMEOUT: Duration = Duration::from_secs(240);
/// The realm the compose setup imports, and its confidential client.
pub const REALM: &str = "kserve";
/// The client with service accounts and the audience mapper.
pub const CLIENT_ID: &str = "kserve-client";
/// Its secret, as the realm file sets it.
pub const CLIENT_SECRET: &str = "kserve-secret";
/// The bootstrap administrator.
const ADMIN: (&str, &str) = ("admin", "admin");

/// The running Keycloak.
pub struct Keycloak {
    port: u16,
    /// Its folder: database, log, and the process id for [`Keycloak::stop`].
    state: PathBuf,
    /// How long it took to be ready, for the docs.
    pub started_in: Duration,
    /// The watchdog shell; it ends by itself once the test process has gone.
    _watchdog: Mutex<Child>,
}

static SHARED: OnceLock<Keycloak> = OnceLock::new();

/// The Keycloak every test of this binary shares, started on first use.
pub fn keycloak() -> &'static Keycloak {
    SHARED.get_or_init(|| Keycloak::start("shared"))
}

/// `$KEYCLOAK_HOME`, else the version `make keycloak` installs.
fn keycloak_home() -> PathBuf {
    let path = std::env::var_os("KEYCLOAK_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/keycloak/keycloak-26.7.3"));
    assert!(
        path.join("bin/kc.sh").is_file(),
        "no Keycloak in {}: run `make keycloak` (or set KEYCLOAK_HOME)",
        path.display()
    );
    path
}

impl Keycloak {
    /// A Keycloak of the caller's own, named `name` among this process's instances (for a test
    /// that stops it). Start it after [`keycloak`] is up: two instances first preparing the one
    /// installation at once could get in each other's way.
    pub fn start(name: &str) -> Keycloak {
        let home = keycloak_home();
        let import = home.join("data/import");
        fs::create_dir_all(&import).expect("create Keycloak's import folder");
        fs::copy(
            repo().join("envoy/compose/kserve-realm.json"),
            import.join("kserve-realm.json"),
        )
        .expect("copy the realm file");
        let port = free_port();
        let state =
            std::env::temp_dir().join(format!("kserve-keycloak-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&state);
        fs::create_dir_all(&state).expect("create Keycloak's state folder");
        let log = state.join("keycloak.log");
        // The watchdog: Keycloak in the background, stopped (and its folder removed) once this
        // test process has gone.
        let script = format!(
            r#"{kc} start-dev --http-port={port} --http-host=127.0.0.1 \
                 --hostname=http://localhost:{port} --import-realm \
                 --db=dev-file --db-url='jdbc:h2:file:{state}/keycloakdb;NON_KEYWORDS=VALUE' \
                 >>{log} 2>&1 &
               kc=$!
               echo $kc >{state}/kc.pid
               while kill -0 {parent} 2>/dev/null && kill -0 $kc 2>/dev/null; do sleep 0.5; done
               pkill -TERM -P $kc 2>/dev/null; kill $kc 2>/dev/null; wait $kc; rm -rf {state}"#,
            kc = home.join("bin/kc.sh").display(),
            state = state.display(),
            log = log.display(),
            parent = std::process::id(),
        );
        let watchdog = Command::new("bash")
            .args(["-c", &script])
            .env("KC_BOOTSTRAP_ADMIN_USERNAME", ADMIN.0)
            .env("KC_BOOTSTRAP_ADMIN_PASSWORD", ADMIN.1)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Keycloak");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        loop {
            let ready = http::request(
                addr,
                "GET",
                &format!("/realms/{REALM}/.well-known/openid-configuration"),
                &[("host", &format!("localhost:{port}"))],
                None,
            )
            .is_ok_and(|r| r.status == 200);
            if ready {
                break;
            }
            let log_text = fs::read_to_string(&log).unwrap_or_default();
            assert!(
                started.elapsed() < START_TIMEOUT,
                "Keycloak not ready after {START_TIMEOUT:?}; log tail:\n{}",
                tail(&log_text, 40)
            );
            thread::sleep(Duration::from_millis(250));
        }
        Keycloak {
            port,
            state,
            started_in: started.elapsed(),
            _watchdog: Mutex::new(watchdog),
        }
    }

    /// Stops it (Keycloak's script hands the signal to the server) and waits until its port is
    /// closed.
    pub fn stop(&self) {
        let pid = fs::read_to_string(self.state.join("kc.pid")).expect("Keycloak's pid file");
        let _ = Command::new("kill").args(["-TERM", pid.trim()]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(self.addr()).is_ok() {
            assert!(
                Instant::now() < deadline,
                "Keycloak still answers 60 s after SIGTERM"
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The realm's issuer: Keycloak's configured hostname, whatever address a token is asked on.
    pub fn issuer(&self) -> String {
        self.issuer_of(REALM)
    }

    /// The issuer of realm `realm`.
    pub fn issuer_of(&self, realm: &str) -> String {
        format!("http://localhost:{}/realms/{realm}", self.port)
    }

    /// `GET path` on Keycloak, as JSON.
    pub fn get_json(&self, path: &str) -> Value {
        let host = format!("localhost:{}", self.port);
        let response = http::request(self.addr(), "GET", path, &[("host", &host)], None)
            .unwrap_or_else(|e| panic!("GET {path} from Keycloak: {e}"));
        assert_eq!(response.status, 200, "GET {path}: {}", response.text());
        response.json()
    }

    /// The token endpoint's answer to a client credentials grant for `client_id`.
    pub fn client_credentials(&self, client_id: &str, secret: &str) -> http::Response {
        self.client_credentials_in(REALM, client_id, secret)
    }

    /// The same in realm `realm`.
    pub fn client_credentials_in(
        &self,
        realm: &str,
        client_id: &str,
        secret: &str,
    ) -> http::Response {
        let host = format!("localhost:{}", self.port);
        let basic = format!("Basic {}", STANDARD.encode(format!("{client_id}:{secret}")));
        http::request(
            self.addr(),
            "POST",
            &format!("/realms/{realm}/protocol/openid-connect/token"),
            &[
                ("host", &host),
                ("authorization", &basic),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            Some(b"grant_type=client_credentials"),
        )
        .unwrap_or_else(|e| panic!("token request to Keycloak: {e}"))
    }

    /// An access token for `kserve-client` by the client credentials grant.
    pub fn token(&self) -> String {
        let response = self.client_credentials(CLIENT_ID, CLIENT_SECRET);
        assert_eq!(response.status, 200, "token: {}", response.text());
        response.json()["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// An administrator's access token (the bootstrap admin, realm `master`).
    fn admin_token(&self) -> String {
        let host = format!("localhost:{}", self.port);
        let body = format!(
            "grant_type=password&client_id=admin-cli&username={}&password={}",
            ADMIN.0, ADMIN.1
        );
        let response = http::request(
            self.addr(),
            "POST",
            "/realms/master/protocol/openid-connect/token",
            &[
                ("host", &host),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            Some(body.as_bytes()),
        )
        .unwrap_or_else(|e| panic!("admin token request: {e}"));
        assert_eq!(response.status, 200, "admin token: {}", response.text());
        response.json()["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// One call to Keycloak's admin REST API under `/admin/realms/kserve`, as the administrator;
    /// `body` is JSON. Panics unless the answer is 2xx.
    pub fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> http::Response {
        self.admin_at(method, &format!("/admin/realms/{REALM}{path}"), body)
    }

    /// One call to Keycloak's admin REST API at `path` (from `/admin`), as the administrator.
    pub fn admin_at(&self, method: &str, path: &str, body: Option<&Value>) -> http::Response {
        let host = format!("localhost:{}", self.port);
        let authorization = format!("Bearer {}", self.admin_token());
        let text = body.map(Value::to_string);
        let response = http::request(
            self.addr(),
            method,
            path,
            &[
                ("host", &host),
                ("authorization", &authorization),
                ("content-type", "application/json"),
            ],
            text.as_deref().map(str::as_bytes),
        )
        .unwrap_or_else(|e| panic!("{method} {path} on Keycloak's admin API: {e}"));
        assert!(
            (200..300).contains(&response.status),
            "{method} {path}: {} {}",
            response.status,
            response.text()
        );
        response
    }

    /// Adds a confidential client with service accounts (the client credentials grant), with the
    /// realm file's audience mapper when `audience_mapper` is set; returns the id of its service
    /// account user.
    pub fn add_service_client(
        &self,
        client_id: &str,
        secret: &str,
        audience_mapper: bool,
    ) -> String {
        let mappers = if audience_mapper {
            serde_json::json!([{
                "name": format!("{client_id}-audience"),
                "protocol": "openid-connect",
                "protocolMapper": "oidc-audience-mapper",
                "config": {"included.client.audience": CLIENT_ID, "access.token.claim": "true",
                           "id.token.claim": "false"}
            }])
        } else {
            serde_json::json!([])
        };
        let client = serde_json::json!({
            "clientId": client_id, "enabled": true, "protocol": "openid-connect",
            "publicClient": false, "clientAuthenticatorType": "client-secret", "secret": secret,
            "serviceAccountsEnabled": true, "standardFlowEnabled": false,
            "directAccessGrantsEnabled": false, "protocolMappers": mappers,
        });
        self.admin("POST", "/clients", Some(&client));
        let found = self
            .admin("GET", &format!("/clients?clientId={client_id}"), None)
            .json();
        let id = found[0]["id"].as_str().expect("client id").to_string();
        let user = self
            .admin("GET", &format!("/clients/{id}/service-account-user"), None)
            .json();
        user["id"]
            .as_str()
            .expect("service account user id")
            .to_string()
    }

    /// Creates realm role `role` and grants it to `user`.
    pub fn grant_realm_role(&self, user: &str, role: &str) {
        self.admin("POST", "/roles", Some(&serde_json::json!({"name": role})));
        let representation = self.admin("GET", &format!("/roles/{role}"), None).json();
        self.admin(
            "POST",
            &format!("/users/{user}/role-mappings/realm"),
            Some(&serde_json::json!([representation])),
        );
    }
}
