//! A loopback TCP proxy for tests: counts the bytes each way, can cut a connection after a
//! given number of bytes (a network that fails mid-request or mid-response), and can play a
//! slow line (a bandwidth each way and a delay on every byte, as a 2G link in a village).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the line behaves for the next connections: its speed each way and its delay.
#[derive(Debug, Clone, Copy, Default)]
pub struct Line {
    /// Bytes per second each way (`None`: as fast as loopback).
    pub bytes_per_second: Option<u64>,
    /// How long every byte takes to cross, each way (half the round trip).
    pub one_way_delay: Duration,
}

impl Line {
    /// A line of `kbit` kilobits per second with a round trip of `rtt`.
    pub fn kbit(kbit: u64, rtt: Duration) -> Line {
        Line {
            bytes_per_second: Some(kbit * 1000 / 8),
            one_way_delay: rtt / 2,
        }
    }

    fn is_plain(&self) -> bool {
        self.bytes_per_second.is_none() && self.one_way_delay.is_zero()
    }
}

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
    cuts: AtomicUsize,
    cut: Mutex<Option<(Cut, usize)>>,
    line: Mutex<Line>,
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
                let line = *s.line.lock().unwrap();
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let _ = server.set_nodelay(true);
                let _ = client.set_nodelay(true);
                let s2 = s.clone();
                spawn_pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    cut.upstream_after,
                    line,
                    s.clone(),
                    true,
                );
                spawn_pipe(server, client, cut.downstream_after, line, s2, false);
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

    /// Makes the next connections run over `line` (those open keep theirs).
    pub fn shape(&self, line: Line) {
        *self.shared.line.lock().unwrap() = line;
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

    /// Connections cut so far (a side reached its [`Cut`] limit).
    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::SeqCst)
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
    line: Line,
    shared: Arc<Shared>,
    upstream: bool,
) {
    // Over a shaped line a reader thread stamps each piece with the time it arrived and the
    // writer lets it out at the line's pace, `one_way_delay` later: pieces in flight overlap as
    // on a real link, so the delay is paid once per round trip, not once per piece.
    // At most 8 pieces (64 KB) in flight, as a TCP window: the sender is held back beyond it.
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Instant, Vec<u8>)>(8);
    let shaped = !line.is_plain();
    if shaped {
        let mut reader = from.try_clone().expect("clone the socket");
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut sent = 0u64;
        let mut free_at = Instant::now();
        'pieces: loop {
            let piece = if shaped {
                match rx.recv() {
                    Ok((arrived, bytes)) => {
                        let due = arrived + line.one_way_delay;
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                        bytes
                    }
                    Err(_) => break,
                }
            } else {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf[..n].to_vec(),
                }
            };
            // At the line's speed, in small slices (a 1 KB slice at 8 KB/s is 125 ms).
            let slice = if line.bytes_per_second.is_some() {
                1024
            } else {
                piece.len().max(1)
            };
            for part in piece.chunks(slice) {
                if let Some(rate) = line.bytes_per_second {
                    let now = Instant::now();
                    if free_at > now {
                        std::thread::sleep(free_at - now);
                    }
                    free_at = free_at.max(now)
                        + Duration::from_secs_f64(part.len() as f64 / rate.max(1) as f64);
                }
                let n = part.len();
                if let Some(l) = limit
                    && sent + n as u64 >= l
                {
                    let keep = (l - sent) as usize;
                    let _ = to.write_all(&part[..keep]);
                    count(&shared, upstream, keep as u64);
                    shared.cuts.fetch_add(1, Ordering::SeqCst);
                    let _ = to.shutdown(Shutdown::Both);
                    let _ = from.shutdown(Shutdown::Both);
                    return;
                }
                if to.write_all(part).is_err() {
                    break 'pieces;
                }
                sent += n as u64;
                count(&shared, upstream, n as u64);
            }
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
