//! A round-robin TCP load balancer for tests, on tokio: each new connection goes to the next
//! server of its list; a server that refuses the connection (stopped, killed) is skipped for
//! the next one, as a load balancer's health check would. Servers can be replaced while it runs
//! (a restarted server comes back on a new port). Loopback only; stops when dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A running balancer.
pub struct Balancer {
    /// Where clients connect.
    pub addr: SocketAddr,
    servers: Arc<Mutex<Vec<Option<SocketAddr>>>>,
    /// Connections handed to each server position.
    served: Arc<Vec<AtomicUsize>>,
    /// Connections open to each server position now.
    open: Arc<Vec<AtomicUsize>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Balancer {
    /// Starts on `127.0.0.1:<free port>` in front of `servers`.
    pub fn start(servers: Vec<SocketAddr>) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("balancer")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let counters = || Arc::new((0..servers.len()).map(|_| AtomicUsize::new(0)).collect());
        let (served, open): (Arc<Vec<AtomicUsize>>, Arc<Vec<AtomicUsize>>) =
            (counters(), counters());
        let servers = Arc::new(Mutex::new(
            servers.into_iter().map(Some).collect::<Vec<_>>(),
        ));
        let (list, counts, opened) = (servers.clone(), served.clone(), open.clone());
        runtime.spawn(async move {
            let next = AtomicUsize::new(0);
            loop {
                // A failed accept (a connection reset while queued, too many files open for a
                // moment) loses that connection only: the balancer goes on listening.
                let mut client = match listener.accept().await {
                    Ok((client, _)) => client,
                    Err(e) => {
                        eprintln!("balancer: accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let start = next.fetch_add(1, Ordering::Relaxed);
                let candidates: Vec<(usize, SocketAddr)> = {
                    let l = list.lock().expect("servers");
                    (0..l.len())
                        .filter_map(|k| {
                            let i = (start + k) % l.len();
                            l[i].map(|a| (i, a))
                        })
                        .collect()
                };
                let (counts, opened) = (counts.clone(), opened.clone());
                tokio::spawn(async move {
                    for (i, server) in candidates {
                        if let Ok(mut upstream) = tokio::net::TcpStream::connect(server).await {
                            counts[i].fetch_add(1, Ordering::Relaxed);
                            opened[i].fetch_add(1, Ordering::SeqCst);
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                            opened[i].fetch_sub(1, Ordering::SeqCst);
                            return;
                        }
                    }
                });
            }
        });
        Ok(Balancer {
            addr,
            servers,
            served,
            open,
            runtime: Some(runtime),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Puts a server at position `i` (a restarted one), or takes it out (`None`).
    pub fn set(&self, i: usize, server: Option<SocketAddr>) {
        self.servers.lock().expect("servers")[i] = server;
    }

    /// How many connections each position was given so far.
    pub fn served(&self) -> Vec<usize> {
        self.served
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }
}

impl Balancer {
    /// How many connections are open to each position now.
    pub fn open(&self) -> Vec<usize> {
        self.open.iter().map(|n| n.load(Ordering::SeqCst)).collect()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
