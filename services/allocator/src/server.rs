//! Accept loops for the Unix and TCP listeners. The listeners and the
//! shutdown future come in as arguments, so socket activation, the binary's
//! own sockets and in-process tests plug in the same way.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::app::App;
use crate::http_errors::JsonErrors;
use crate::routes::{self, Peer};

/// The sockets to serve, already bound and non-blocking: systemd's, the
/// allocator's own, or a test's.
pub struct Listeners {
    pub unix: Vec<std::os::unix::net::UnixListener>,
    pub tcp: Vec<std::net::TcpListener>,
}

/// A client that opens a connection and stalls is dropped after this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the API on `listeners` until `shutdown` resolves, then stops
/// accepting and lets requests in flight finish (up to a second).
pub async fn serve(listeners: Listeners, app: Arc<App>, shutdown: impl Future<Output = ()>) -> Result<()> {
    let limit = Arc::new(Semaphore::new(app.engine().config().limits.max_connections));
    let mut loops = JoinSet::new();
    for l in listeners.unix {
        let l = tokio::net::UnixListener::from_std(l).context("serving a Unix listener")?;
        let (app, limit) = (app.clone(), limit.clone());
        loops.spawn(async move {
            loop {
                let Ok(permit) = limit.clone().acquire_owned().await else { return };
                match l.accept().await {
                    Ok((stream, _)) => match stream.peer_cred() {
                        Ok(c) => {
                            let pid = c.pid().map(|p| p as u32);
                            let start_time = pid.and_then(styxy_observe::process::start_time);
                            let peer = Peer::Unix { uid: c.uid(), pid, start_time };
                            tokio::spawn(connection(stream, peer, app.clone(), permit));
                        }
                        Err(e) => tracing::warn!("no peer credentials on a Unix connection: {e}"),
                    },
                    Err(e) => accept_failed(e).await,
                }
            }
        });
    }
    for l in listeners.tcp {
        let l = tokio::net::TcpListener::from_std(l).context("serving a TCP listener")?;
        let (app, limit) = (app.clone(), limit.clone());
        loops.spawn(async move {
            loop {
                let Ok(permit) = limit.clone().acquire_owned().await else { return };
                match l.accept().await {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(connection(stream, Peer::Tcp, app.clone(), permit));
                    }
                    Err(e) => accept_failed(e).await,
                }
            }
        });
    }
    shutdown.await;
    loops.abort_all();
    // Let requests in flight finish; idle keep-alive connections are cut.
    app.activity.until_drained(Duration::from_secs(1)).await;
    Ok(())
}

/// Out of descriptors and similar: back off instead of spinning.
async fn accept_failed(e: std::io::Error) {
    tracing::warn!("accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn connection<S>(stream: S, peer: Peer, app: Arc<App>, permit: OwnedSemaphorePermit)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    app.connection_opened();
    let busy = app.activity.begin();
    let service = {
        let app = app.clone();
        service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(routes::handle(app, peer, req).await) }
        })
    };
    let result = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(JsonErrors::new(stream)), service)
        .await;
    if let Err(e) = result {
        tracing::debug!("connection ended: {e}");
    }
    drop(busy);
    app.connection_closed();
    drop(permit);
}
