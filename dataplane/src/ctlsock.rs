//! The control socket's server, polled by the control thread and never blocking it: a
//! non-blocking Unix stream listener (mode 0660) and its clients, with line framing.
//! Everything is bounded: clients at once, request size, requests answered per client
//! per poll, and output waiting for a slow reader. Beyond a bound a client gets an error
//! line and is closed; no client can stall the control thread or another client.

use control::ctl;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

pub const MAX_CLIENTS: usize = 64;
const REQUESTS_PER_POLL: usize = 16;
const MAX_PENDING_OUTPUT: usize = 16 << 20;

struct Client {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// The client closed its side: answer what it sent, then close.
    eof: bool,
    /// Close once the output is written.
    closing: bool,
    dead: bool,
}

pub struct CtlServer {
    listener: UnixListener,
    path: PathBuf,
    clients: Vec<Client>,
    pub requests: u64,
    pub errors: u64,
    pub turned_away: u64,
}

impl CtlServer {
    /// Binds `path` (creating its directory), mode 0660. A live socket there means
    /// another instance runs: refused. A stale one (nobody listening) is removed; any
    /// other file there is left alone and refused.
    pub fn bind(path: &Path) -> Result<CtlServer, String> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(format!(
                    "{} exists and is not a socket; remove it or set control.socket",
                    path.display()
                ));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "{} is in use by another running sluiced; stop it or give this one another control.socket",
                    path.display()
                ));
            }
            std::fs::remove_file(path)
                .map_err(|e| format!("cannot remove the stale socket {}: {e}", path.display()))?;
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let listener = UnixListener::bind(path).map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
        Ok(CtlServer {
            listener,
            path: path.to_path_buf(),
            clients: Vec::new(),
            requests: 0,
            errors: 0,
            turned_away: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Accepts, reads, answers (`handle` turns a request's words into a result or an
    /// error) and writes, all without blocking.
    pub fn poll(&mut self, handle: &mut dyn FnMut(&[String]) -> Result<serde_json::Value, String>) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let mut c = Client {
                        stream,
                        input: Vec::new(),
                        output: Vec::new(),
                        eof: false,
                        closing: false,
                        dead: false,
                    };
                    if self.clients.len() >= MAX_CLIENTS {
                        self.turned_away += 1;
                        c.output = format!("{}\n", ctl::error(&format!("too many clients (at most {MAX_CLIENTS})")))
                            .into_bytes();
                        c.closing = true;
                        write_some(&mut c);
                        continue;
                    }
                    self.clients.push(c);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        for c in self.clients.iter_mut() {
            if !c.closing && !c.eof {
                read_some(c);
            }
            let mut answered = 0;
            while answered < REQUESTS_PER_POLL && !c.closing {
                // The next request runs to its newline, or is still arriving.
                let nl = c.input.iter().position(|&b| b == b'\n');
                if nl.unwrap_or(c.input.len()) > ctl::MAX_REQUEST {
                    self.errors += 1;
                    let msg = format!("request longer than {} bytes", ctl::MAX_REQUEST);
                    respond(c, ctl::error(&msg));
                    c.closing = true;
                    break;
                }
                let Some(nl) = nl else { break };
                let line: Vec<u8> = c.input.drain(..=nl).collect();
                answered += 1;
                let text = String::from_utf8_lossy(&line);
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                self.requests += 1;
                let reply = match ctl::parse_request(text).and_then(|w| handle(&w)) {
                    Ok(v) => ctl::ok(v),
                    Err(e) => {
                        self.errors += 1;
                        ctl::error(&e)
                    }
                };
                respond(c, reply);
                if c.output.len() > MAX_PENDING_OUTPUT {
                    c.dead = true;
                }
            }
            if c.eof && !c.input.contains(&b'\n') {
                c.closing = true;
            }
            write_some(c);
            if c.closing && c.output.is_empty() {
                c.dead = true;
            }
        }
        self.clients.retain(|c| !c.dead);
    }
}

fn respond(c: &mut Client, line: String) {
    c.output.extend_from_slice(line.as_bytes());
    c.output.push(b'\n');
}

fn read_some(c: &mut Client) {
    let mut buf = [0u8; 16384];
    // Read what is there, but never more than one oversized request's worth per poll.
    while c.input.len() <= ctl::MAX_REQUEST + buf.len() {
        match c.stream.read(&mut buf) {
            Ok(0) => {
                // A last request without its newline still counts.
                if !c.input.is_empty() && c.input.last() != Some(&b'\n') {
                    c.input.push(b'\n');
                }
                c.eof = true;
                return;
            }
            Ok(n) => c.input.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                c.dead = true;
                return;
            }
        }
    }
}

fn write_some(c: &mut Client) {
    while !c.output.is_empty() {
        match c.stream.write(&c.output) {
            Ok(0) => {
                c.dead = true;
                return;
            }
            Ok(n) => {
                c.output.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                c.dead = true;
                return;
            }
        }
    }
}

impl Drop for CtlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
