//! The accept loop: takes TCP connections (completing TLS when configured) up to a limit, serves
//! HTTP/1.1 on them with read timeouts so idle and half-sent connections cannot pile up, and
//! shuts down gracefully.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, body::Body, extract::ConnectInfo};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::{GracefulShutdown, Watcher},
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::Semaphore,
};
use tokio_rustls::{TlsAcceptor, rustls};
use tower::ServiceExt;
use tower_http::timeout::{TimeoutBody, TimeoutError};

use crate::edge::{BodyTimedOut, Transport};

/// Connection limits and timeouts of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// How long a client may take to send a request's line and headers. The clock also runs
    /// while a kept-alive connection waits for its next request, so this is the idle timeout of
    /// kept-alive connections as well.
    pub header_read_timeout: Duration,
    /// How long a request body may pause between two pieces before the request fails.
    pub body_read_timeout: Duration,
    /// How long a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
    /// The most connections served at once; further ones wait in the listen queue until one
    /// closes.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_secs(15),
            body_read_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    }
}

/// Accept errors that concern one connection only (the next accept may well succeed).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// How long to pause after an accept error such as EMFILE before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(200);

/// Serves `router` on `listener` (TLS when `tls` is given) until `shutdown` completes; then
/// stops accepting, lets the requests under way finish and returns. Each request carries the
/// peer as `ConnectInfo<SocketAddr>` and a [`Transport`].
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "accept failed; pausing before the next accept");
                    tokio::select! {
                        _ = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                        _ = &mut shutdown => break,
                    }
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let (router, http, watcher, acceptor) = (
            router.clone(),
            http.clone(),
            graceful.watcher(),
            acceptor.clone(),
        );
        tokio::spawn(async move {
            let _slot = slot;
            let conn = Conn {
                router,
                peer,
                tls: acceptor.is_some(),
                limits,
            };
            match acceptor {
                None => conn.serve(tcp, &http, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(tcp))
                        .await
                    {
                        Ok(Ok(stream)) => conn.serve(stream, &http, watcher).await,
                        Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// One accepted connection.
struct Conn {
    router: Router,
    peer: SocketAddr,
    tls: bool,
    limits: ConnLimits,
}

impl Conn {
    async fn serve<I>(self, io: I, http: &hyper::server::conn::http1::Builder, watcher: Watcher)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Conn {
            router,
            peer,
            tls,
            limits,
        } = self;
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let timed_out = BodyTimedOut::default();
            let flag = timed_out.clone();
            let mut req = req.map(|body| {
                Body::new(
                    TimeoutBody::new(limits.body_read_timeout, body).map_err(move |e| {
                        if e.is::<TimeoutError>() {
                            flag.set();
                        }
                        e
                    }),
                )
            });
            req.extensions_mut().insert(timed_out);
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(Transport { tls });
            router.clone().oneshot(req)
        });
        let conn = http.serve_connection(TokioIo::new(io), service);
        if let Err(e) = watcher.watch(conn).await {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}
