//! A person's browser, as far as the provider's sign-in pages need one: cookies by path, `303`
//! redirects followed, and a page's form submitted with its hidden fields and the fields the
//! person fills in.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::http::{self, Response};

/// Cookies and a server.
pub struct Browser {
    addr: SocketAddr,
    host: String,
    /// (path, name) → value.
    cookies: BTreeMap<(String, String), String>,
}

impl Browser {
    pub fn new(addr: SocketAddr) -> Browser {
        Browser {
            addr,
            host: addr.to_string(),
            cookies: BTreeMap::new(),
        }
    }

    /// Opens `url` (absolute on this server, or a path), follows redirects, and submits each
    /// page's form (filling `fields`) until a page has none. Returns the last page.
    pub fn approve(&mut self, url: &str, fields: &[(&str, &str)]) -> Response {
        let mut page = self.request("GET", url, None);
        for _ in 0..10 {
            let Some((action, mut inputs)) = form(&page.text()) else {
                return page;
            };
            for (name, value) in fields {
                if let Some(input) = inputs.iter_mut().find(|(n, _)| n == name) {
                    input.1 = (*value).to_owned();
                }
            }
            let body = inputs
                .iter()
                .map(|(n, v)| format!("{n}={}", encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            page = self.request("POST", &action, Some(body));
        }
        panic!("sign-in did not finish in 10 forms: {}", page.text());
    }

    fn request(&mut self, method: &str, url: &str, body: Option<String>) -> Response {
        let mut method = method.to_owned();
        let mut path = self.path_of(url);
        let mut body = body;
        for _ in 0..10 {
            let cookie = self.cookie_header(&path);
            let mut headers = vec![("host", self.host.as_str()), ("cookie", cookie.as_str())];
            if body.is_some() {
                headers.push(("content-type", "application/x-www-form-urlencoded"));
            }
            let response = http::request(
                self.addr,
                &method,
                &path,
                &headers,
                body.as_deref().map(str::as_bytes),
            )
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            for (name, value) in &response.headers {
                if name == "set-cookie" {
                    self.store(value);
                }
            }
            match (response.status, response.header("location")) {
                (301..=303, Some(location)) => {
                    path = self.path_of(location);
                    method = "GET".into();
                    body = None;
                }
                _ => return response,
            }
        }
        panic!("too many redirects from {url}");
    }

    fn path_of(&self, url: &str) -> String {
        match url.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/".into(), |i| rest[i..].to_owned()),
            None => url.to_owned(),
        }
    }

    fn store(&mut self, set_cookie: &str) {
        let mut parts = set_cookie.split(';');
        let Some((name, value)) = parts.next().and_then(|p| p.trim().split_once('=')) else {
            return;
        };
        let path = parts
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.eq_ignore_ascii_case("path"))
            .map_or("/".to_owned(), |(_, v)| v.to_owned());
        self.cookies
            .insert((path, name.to_owned()), value.to_owned());
    }

    fn cookie_header(&self, path: &str) -> String {
        self.cookies
            .iter()
            .filter(|((cookie_path, _), _)| path.starts_with(cookie_path.as_str()))
            .map(|((_, name), value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The first form of `html`: its action and its inputs' names and values.
fn form(html: &str) -> Option<(String, Vec<(String, String)>)> {
    let start = html.find("<form")?;
    let end = html[start..]
        .find("</form>")
        .map_or(html.len(), |i| start + i);
    let form = &html[start..end];
    let action = attribute(form, "action")?;
    let inputs = form
        .match_indices("<input")
        .filter_map(|(i, _)| {
            let tag = &form[i..form[i..].find('>').map_or(form.len(), |e| i + e)];
            Some((
                attribute(tag, "name")?,
                attribute(tag, "value").unwrap_or_default(),
            ))
        })
        .collect();
    Some((action, inputs))
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!("{name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(tag[start..end].replace("&amp;", "&"))
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
