//! The web server's listener: plain `axum::serve` without a web config; with one
//! (`--web.config.file`, see [`super::webconfig`]) an accept loop that does the TLS
//! handshake when the file configures TLS, then serves HTTP/1.1 with every request
//! passing the rate limit and basic auth first, and the configured headers added to every
//! answer.
//!
//! Each connection runs in its own task, and a handshake must finish within
//! [`HANDSHAKE_TIMEOUT`] and request headers within [`HEADER_READ_TIMEOUT`]: a client that
//! connects and never speaks holds one task for a while, never the accept loop or anyone
//! else. The web config (and the certificate files it names) is looked at for changes at
//! every new connection, so a rotated certificate is served from the next handshake on.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::webconfig::{Verdict, WebSecurity};

/// Longest a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest in-flight requests may run on after shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets in-flight
/// requests finish.
///
/// Without `web_config`, this is plain `axum::serve`. With it, the file is loaded and
/// applied to every connection and request (see [`serve_with`]).
///
/// # Errors
/// A web config that does not load, or an error of the listener.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    web_config: Option<PathBuf>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let security = match web_config {
        Some(path) => {
            Some(Arc::new(WebSecurity::new(&path).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, e)
            })?))
        }
        None => None,
    };
    serve_with(listener, router, security, shutdown).await
}

/// [`serve`] with the web config already loaded (so that a broken file refuses the start
/// before the listener serves anything); `None` is plain `axum::serve`.
///
/// # Errors
/// An error of the listener without a web config; none in practice with one (accept
/// errors are logged and retried).
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    security: Option<Arc<WebSecurity>>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let Some(security) = security else {
        return axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    };
    let first = security.current().await;
    tracing::info!(
        file = %security.path().display(),
        tls = first.tls.is_some(),
        basic_auth_users = first.user_names().count(),
        "web config loaded"
    );
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::error!(error = %e, "accept a web connection");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let (security, router, token) = (Arc::clone(&security), router.clone(), shutdown.clone());
        tracker.spawn(connection(tcp, peer, security, router, token));
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    security: Arc<WebSecurity>,
    router: Router,
    shutdown: CancellationToken,
) {
    let _ = tcp.set_nodelay(true);
    let config = security.current().await;
    let Some(tls) = &config.tls else {
        return serve_http(tcp, peer, security, router, shutdown).await;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(tls));
    let handshake = async {
        // A TLS connection starts with a handshake record (0x16); a plain HTTP request
        // with a method name. That one gets a readable answer instead of a reset, as Go's
        // servers (Prometheus, node_exporter) give.
        let mut first = [0u8; 1];
        let n = tcp.peek(&mut first).await?;
        if n == 1 && first[0].is_ascii_uppercase() {
            return Ok(Err(tcp));
        }
        acceptor.accept(tcp).await.map(Ok)
    };
    let handshake = tokio::select! {
        () = shutdown.cancelled() => return,
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake) => r,
    };
    match handshake {
        Ok(Ok(Ok(stream))) => serve_http(stream, peer, security, router, shutdown).await,
        Ok(Ok(Err(mut tcp))) => {
            tracing::debug!(%peer, "plain HTTP request on the TLS port");
            let answer = "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";
            let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
                // Read the request head first and the rest after: closing a socket with
                // unread data sends a reset, which can destroy the answer in flight.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tcp.write_all(answer.as_bytes()).await;
                let _ = tcp.shutdown().await;
                while let Ok(n) = tcp.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
        }
        // A client's failure, not ours: debug level.
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, timeout = ?HANDSHAKE_TIMEOUT, "TLS handshake timed out"),
    }
}

async fn serve_http<S>(
    stream: S,
    peer: SocketAddr,
    security: Arc<WebSecurity>,
    router: Router,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (security, router) = (Arc::clone(&security), router.clone());
        async move { Ok::<_, Infallible>(respond(req, &security, router).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = shutdown.cancelled() => {
            // Finish the request in flight (idle connections close at once), within bounds.
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()).await {
                Ok(r) => r,
                Err(_) => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "web connection ended with an error");
    }
}

async fn respond(req: Request<Incoming>, security: &WebSecurity, router: Router) -> Response<Body> {
    let config = security.current().await;
    let mut resp = match security.authorize(&config, req.headers()).await {
        Verdict::Allow => match TowerToHyperService::new(router).call(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        },
        Verdict::Unauthorized => {
            let mut r = plain(StatusCode::UNAUTHORIZED, "Unauthorized\n");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Basic"),
            );
            r
        }
        Verdict::TooManyRequests => plain(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n"),
    };
    // The operator's headers win over the handler's.
    for (name, value) in &config.headers {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
