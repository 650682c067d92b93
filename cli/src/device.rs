//! The device authorization grant (RFC 8628): for a person at a terminal. The program shows a
//! code and a URL, the person approves in a browser anywhere, and the program polls the token
//! endpoint until they have.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::dpop::DpopKey;
use crate::oauth::{self, ClientAuth, Endpoints, Failure};

/// RFC 8628 §3.4's grant type.
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// RFC 8628 §3.2: the interval when the server names none.
const DEFAULT_INTERVAL: u64 = 5;

/// Asks for a device code with `form` (scope, audience, resource), tells the person where to
/// approve it, and polls until approved. Returns the token response.
pub fn authorize(
    http: &crate::http::Client,
    endpoints: &Endpoints,
    auth: &ClientAuth,
    form: &[(&str, &str)],
    dpop: Option<&DpopKey>,
    now: &dyn Fn() -> u64,
) -> Result<Value, String> {
    let url = endpoints.device_authorization.as_deref().ok_or_else(|| {
        format!(
            "{} publishes no device_authorization_endpoint: use another --flow",
            endpoints.issuer
        )
    })?;
    let answer = oauth::post(http, url, auth, form, None, now())
        .map_err(|failure| format!("device authorization at {url}: {failure}"))?;
    let text = |name: &str| answer.get(name).and_then(Value::as_str);
    let (Some(device_code), Some(user_code), Some(verification_uri)) = (
        text("device_code"),
        text("user_code"),
        text("verification_uri"),
    ) else {
        return Err(format!(
            "{url}: the answer lacks device_code, user_code or verification_uri"
        ));
    };
    let lifetime = answer
        .get("expires_in")
        .and_then(Value::as_u64)
        .unwrap_or(600);
    let mut interval = answer
        .get("interval")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_INTERVAL)
        .max(1);
    match text("verification_uri_complete") {
        Some(complete) => eprintln!(
            "To sign in, open {complete}\n(or open {verification_uri} and enter the code {user_code})"
        ),
        None => eprintln!("To sign in, open {verification_uri} and enter the code {user_code}"),
    }
    let deadline = Instant::now() + Duration::from_secs(lifetime);
    let poll = [("grant_type", GRANT_TYPE), ("device_code", device_code)];
    loop {
        thread::sleep(Duration::from_secs(interval));
        if Instant::now() > deadline {
            return Err("the device code expired before it was approved".to_owned());
        }
        match oauth::post(http, &endpoints.token, auth, &poll, dpop, now()) {
            Ok(response) => {
                eprintln!("Signed in.");
                return Ok(response);
            }
            Err(Failure::Refused { error, .. }) if error == "authorization_pending" => {}
            // RFC 8628 §3.5: every slow_down adds five seconds to the interval.
            Err(Failure::Refused { error, .. }) if error == "slow_down" => interval += 5,
            Err(Failure::Refused { error, .. }) if error == "access_denied" => {
                return Err("the sign-in was denied".to_owned())
            }
            Err(Failure::Refused { error, .. }) if error == "expired_token" => {
                return Err("the device code expired before it was approved".to_owned())
            }
            Err(failure) => return Err(failure.to_string()),
        }
    }
}
