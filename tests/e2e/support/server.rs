//! A tiny threaded HTTP/1.1 server on a loopback port that can stop and start again on the
//! same port, so a test can make a backend unreachable and bring it back.

use std::io::{BufReader, ErrorKind};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::http::{read_request, write_response, ReceivedRequest};

/// What a handler answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Extra headers (Content-Length and Connection are added).
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// Wait this long before answering (simulates a slow backend).
    pub delay: Duration,
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type", "application/json".to_string())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
}

/// Turns a received request into a reply; runs on a connection thread.
pub type Handler = dyn Fn(&ReceivedRequest) -> Reply + Send + Sync;

/// A server bound to a fixed loopback port while running.
pub struct HttpServer {
    addr: SocketAddr,
    handler: Arc<Handler>,
    keep_alive: bool,
    running: Option<Running>,
}

struct Running {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// A free loopback port: bound once to let the kernel choose it, then released.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

impl HttpServer {
    /// A server on a reserved port that does not listen until [`HttpServer::start`].
    pub fn reserve(handler: Arc<Handler>, keep_alive: bool) -> HttpServer {
        HttpServer {
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            handler,
            keep_alive,
            running: None,
        }
    }

    /// A server already listening.
    pub fn start_new(handler: Arc<Handler>, keep_alive: bool) -> HttpServer {
        let mut server = HttpServer::reserve(handler, keep_alive);
        server.start();
        server
    }

    /// The address the server listens on (or will).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts listening on the reserved port; retries briefly if the port is still held.
    pub fn start(&mut self) {
        if self.running.is_some() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr) {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline && e.kind() == ErrorKind::AddrInUse => {
                    thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("cannot listen on {}: {e}", self.addr),
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::clone(&self.handler);
        let keep_alive = self.keep_alive;
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                let handler = Arc::clone(&handler);
                thread::spawn(move || serve_connection(stream, &*handler, keep_alive));
            }
        });
        self.running = Some(Running { stop, thread });
    }

    /// Stops accepting connections and closes the port (new connections are refused).
    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop.store(true, Ordering::SeqCst);
            // Wake the blocking accept so the loop sees the flag and drops the listener.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = running.thread.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve_connection(stream: TcpStream, handler: &Handler, keep_alive: bool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let request = match read_request(&mut reader) {
            Ok(Some(request)) => request,
            Ok(None) | Err(_) => return,
        };
        let reply = handler(&request);
        if !reply.delay.is_zero() {
            thread::sleep(reply.delay);
        }
        let close = !keep_alive || request.wants_close();
        if write_response(
            &mut writer,
            reply.status,
            &reply.headers,
            &reply.body,
            close,
        )
        .is_err()
            || close
        {
            return;
        }
    }
}
