//! A loopback TCP proxy for tests: counts the bytes each way and can cut a connection after a
//! given number of bytes, to play a network that fails mid-request or mid-response.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Where to cut the next connections.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cut {
    /// Close the connection after this many bytes from client to server.
    pub upstream_after: Option<u64>,
    /// Close the connection after this many bytes from server to client.
    pub downstream_after: Option<u64>,
}

#[derive(Default)]
struct Shared {
    up: AtomicU64,
    down: AtomicU64,
    connections: AtomicUsize,
    cut: Mutex<Option<(Cut, usize)>>,
    stopped: AtomicBool,
}

/// A running proxy to one target. Stops accepting when dropped.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Starts a proxy on `127.0.0.1:<free port>` forwarding to `target`.
    pub fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                s.connections.fetch_add(1, Ordering::SeqCst);
                let cut = {
                    let mut guard = s.cut.lock().unwrap();
                    match guard.as_mut() {
                        Some((cut, n)) if *n > 0 => {
                            *n -= 1;
                            *cut
                        }
                        _ => Cut::default(),
                    }
                };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let s2 = s.clone();
                spawn_pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    cut.upstream_after,
                    s.clone(),
                    true,
                );
                spawn_pipe(server, client, cut.downstream_after, s2, false);
            }
        });
        Ok(Proxy { addr, shared })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cuts the next `connections` connections as `cut` says.
    pub fn cut_next(&self, cut: Cut, connections: usize) {
        *self.shared.cut.lock().unwrap() = Some((cut, connections));
    }

    /// Bytes forwarded from clients to the server so far.
    pub fn bytes_up(&self) -> u64 {
        self.shared.up.load(Ordering::SeqCst)
    }

    /// Bytes forwarded from the server to clients so far.
    pub fn bytes_down(&self) -> u64 {
        self.shared.down.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Sets the byte counters back to zero.
    pub fn reset_counts(&self) {
        self.shared.up.store(0, Ordering::SeqCst);
        self.shared.down.store(0, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn spawn_pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    limit: Option<u64>,
    shared: Arc<Shared>,
    upstream: bool,
) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut sent = 0u64;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let n = match limit {
                Some(l) if sent + n as u64 >= l => {
                    let keep = (l - sent) as usize;
                    let _ = to.write_all(&buf[..keep]);
                    count(&shared, upstream, keep as u64);
                    let _ = to.shutdown(Shutdown::Both);
                    let _ = from.shutdown(Shutdown::Both);
                    return;
                }
                _ => n,
            };
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
            sent += n as u64;
            count(&shared, upstream, n as u64);
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

fn count(shared: &Shared, upstream: bool, n: u64) {
    if upstream {
        shared.up.fetch_add(n, Ordering::SeqCst);
    } else {
        shared.down.fetch_add(n, Ordering::SeqCst);
    }
}
