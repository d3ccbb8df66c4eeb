//! The scrape endpoint: a small blocking HTTP/1.1 server on one side thread (no async
//! runtime in the appliance). `GET /metrics` renders the exposition; `/` says where it is;
//! anything else gets 404 or 405. One connection at a time, each with a 2 s deadline for
//! its request and a bounded request size, so a slow or hostile client cannot hold it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Largest request head read; longer requests are refused.
const MAX_REQUEST: usize = 8192;
/// How long a client may take to send its request, and to take the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the idle listener looks at the stop flag.
const IDLE_POLL: Duration = Duration::from_millis(20);

/// Requests served, by outcome.
#[derive(Debug, Default)]
pub struct EndpointStats {
    pub scrapes: AtomicU64,
    pub errors: AtomicU64,
}

/// A running endpoint; dropping it stops the thread and waits for it.
pub struct Endpoint {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<EndpointStats>,
}

impl Endpoint {
    /// Binds `addr` (port 0 picks a free one) and serves `render` from a thread named
    /// `sluice-prom`.
    pub fn start(addr: SocketAddr, render: impl Fn() -> String + Send + 'static) -> io::Result<Endpoint> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(EndpointStats::default());
        let thread = {
            let (stop, stats) = (Arc::clone(&stop), Arc::clone(&stats));
            std::thread::Builder::new()
                .name("sluice-prom".into())
                .spawn(move || serve(&listener, &stop, &stats, &render))?
        };
        Ok(Endpoint {
            addr,
            stop,
            thread: Some(thread),
            stats,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: &TcpListener, stop: &AtomicBool, stats: &EndpointStats, render: &dyn Fn() -> String) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => match answer(stream, render) {
                Ok(true) => {
                    stats.scrapes.fetch_add(1, Ordering::Relaxed);
                }
                Ok(false) => {}
                Err(_) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                }
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(IDLE_POLL),
            Err(_) => {
                // Out of file descriptors and the like: back off rather than spin.
                stats.errors.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(IDLE_POLL);
            }
        }
    }
}

/// The request line's method and path, once the head is complete; `Err` for a head that is
/// not HTTP or too long.
fn request_line(head: &[u8]) -> Result<Option<(String, String)>, &'static str> {
    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if head.len() >= MAX_REQUEST {
            Err("request too long")
        } else {
            Ok(None)
        };
    };
    let text = std::str::from_utf8(&head[..end]).map_err(|_| "request is not text")?;
    let line = text.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(p), Some(v)) if v.starts_with("HTTP/1.") && !m.is_empty() => {
            let path = p.split('?').next().unwrap_or("").to_string();
            Ok(Some((m.to_string(), path)))
        }
        _ => Err("malformed request line"),
    }
}

fn respond(stream: &mut TcpStream, status: &str, ctype: &str, body: &[u8], head_only: bool) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    stream.write_all(&out)?;
    stream.flush()
}

/// Reads what the client still sends (briefly, and boundedly) before the close, so that
/// the close does not reset the connection before the client has read the answer.
fn drain(stream: &mut TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 4096];
    let mut left = 1 << 16;
    while left > 0 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => left -= n.min(left),
        }
    }
}

/// Serves one connection; `Ok(true)` when it was a scrape of /metrics.
fn answer(mut stream: TcpStream, render: &dyn Fn() -> String) -> io::Result<bool> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let (method, path) = loop {
        match request_line(&head) {
            Ok(Some(r)) => break r,
            Ok(None) => {}
            Err(why) => {
                respond(
                    &mut stream,
                    "400 Bad Request",
                    "text/plain",
                    format!("{why}\n").as_bytes(),
                    false,
                )?;
                drain(&mut stream);
                return Ok(false);
            }
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the request ended",
            ));
        }
        let room = MAX_REQUEST.saturating_sub(head.len());
        head.extend_from_slice(&buf[..n.min(room)]);
    };
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            b"only GET and HEAD\n",
            false,
        )?;
        return Ok(false);
    }
    match path.as_str() {
        "/metrics" => {
            let body = render();
            respond(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                body.as_bytes(),
                head_only,
            )?;
            Ok(true)
        }
        "/" => {
            respond(
                &mut stream,
                "200 OK",
                "text/plain",
                b"sluiced: metrics at /metrics\n",
                head_only,
            )?;
            Ok(false)
        }
        _ => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                b"not found; metrics at /metrics\n",
                head_only,
            )?;
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_metrics_and_refuses_the_rest() {
        let e = Endpoint::start("127.0.0.1:0".parse().unwrap(), || "sluice_up 1\n".to_string()).unwrap();
        let a = e.addr();
        let r = get(a, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4"), "{r}");
        assert!(r.contains("Content-Length: 12\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nsluice_up 1\n"), "{r}");
        // The request may arrive in pieces, with a query string.
        let mut s = TcpStream::connect(a).unwrap();
        s.write_all(b"GET /metrics?x=1 HT").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        s.write_all(b"TP/1.0\r\n\r\n").unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        assert!(r.ends_with("sluice_up 1\n"), "{r}");
        let r = get(a, b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK") && r.ends_with("\r\n\r\n"), "{r}");
        assert!(get(a, b"GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(a, b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(get(a, b"hello there\r\n\r\n").starts_with("HTTP/1.1 400"));
        let long = vec![b'a'; 20_000];
        assert!(get(a, &long).starts_with("HTTP/1.1 400"));
        // A client that connects and says nothing is cut off, and the next is served.
        let idle = TcpStream::connect(a).unwrap();
        let r = get(a, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(r.ends_with("sluice_up 1\n"), "{r}");
        drop(idle);
        // Counted once the connection is closed, just after the client saw the close.
        let t0 = std::time::Instant::now();
        while e.stats.scrapes.load(Ordering::Relaxed) < 4 && t0.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(e.stats.scrapes.load(Ordering::Relaxed), 4);
        // Stopping joins the thread and frees the port.
        drop(e);
        assert!(TcpListener::bind(a).is_ok());
    }
}
