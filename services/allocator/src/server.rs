//! Accept loops for the Unix and TCP listeners. The listeners and the
//! shutdown future come in as arguments, so socket activation, the binary's
//! own sockets and in-process tests plug in the same way.
//!
//! Fairness by construction: every connection is counted against its user
//! (the kernel's word on the Unix socket, the token's on TCP), each user has
//! the same number of slots, and a user over its count has its new
//! connections refused, nobody else's. Accepting never waits for a slot, so
//! one user's flood cannot keep another's connection in the backlog. A TCP
//! connection is nobody's until it shows a token: it waits in a pool of its
//! own, bounded, for at most [`AUTH_TIMEOUT`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use styxy_proto::api::ErrorCode;
use styxy_proto::error::ApiError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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
/// A TCP client must have shown a valid token within this.
const AUTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Open connections per user.
struct Slots {
    per_user: usize,
    held: Mutex<HashMap<u32, usize>>,
}

/// One connection's count against its user, given back when dropped.
struct Slot {
    slots: Arc<Slots>,
    uid: u32,
}

impl Slots {
    fn new(per_user: usize) -> Arc<Slots> {
        Arc::new(Slots { per_user, held: Mutex::new(HashMap::new()) })
    }

    /// A slot for `uid`, or the refusal to send when it holds all of its own.
    fn take(self: &Arc<Self>, uid: u32) -> std::result::Result<Slot, ApiError> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(uid).or_default();
        if *count >= self.per_user {
            return Err(ApiError::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "user {uid} already holds {} connections to the allocator (limit {}); close some",
                    count, self.per_user
                ),
            ));
        }
        *count += 1;
        Ok(Slot { slots: self.clone(), uid })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.uid) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.uid);
            }
        }
    }
}

/// What keeps a connection counted: its user's slot, or (TCP, before a
/// token) its place in the pool of strangers.
enum Admission {
    Stranger { _permit: OwnedSemaphorePermit },
    User { _slot: Slot },
}

/// Serves the API on `listeners` until `shutdown` resolves, then stops
/// accepting and lets requests in flight finish (up to a second).
pub async fn serve(listeners: Listeners, app: Arc<App>, shutdown: impl Future<Output = ()>) -> Result<()> {
    let (per_user, strangers) = {
        let limits = app.engine().config().limits.clone();
        (limits.max_connections_per_user, limits.max_connections)
    };
    let slots = Slots::new(per_user);
    let refusing = Arc::new(Semaphore::new(REFUSALS));
    let strangers = Arc::new(Semaphore::new(strangers));
    let mut loops = JoinSet::new();
    for l in listeners.unix {
        let l = tokio::net::UnixListener::from_std(l).context("serving a Unix listener")?;
        let (app, slots, refusing) = (app.clone(), slots.clone(), refusing.clone());
        loops.spawn(async move {
            loop {
                match l.accept().await {
                    Ok((stream, _)) => match stream.peer_cred() {
                        Ok(c) => match slots.take(c.uid()) {
                            Ok(slot) => {
                                let pid = c.pid().map(|p| p as u32);
                                let start_time = pid.and_then(styxy_observe::process::start_time);
                                let peer = Peer::Unix { uid: c.uid(), pid, start_time };
                                let admission = Admission::User { _slot: slot };
                                tokio::spawn(serve_connection(stream, peer, app.clone(), admission, None));
                            }
                            Err(refusal) => refuse(stream, refusal, &refusing),
                        },
                        Err(e) => tracing::warn!("no peer credentials on a Unix connection: {e}"),
                    },
                    Err(e) => accept_failed(e).await,
                }
            }
        });
    }
    for l in listeners.tcp {
        let l = tokio::net::TcpListener::from_std(l).context("serving a TCP listener")?;
        let (app, strangers) = (app.clone(), strangers.clone());
        let (slots, refusing) = (slots.clone(), refusing.clone());
        loops.spawn(async move {
            loop {
                match l.accept().await {
                    Ok((stream, _)) => match strangers.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let _ = stream.set_nodelay(true);
                            let admission = Admission::Stranger { _permit: permit };
                            let slots = Some(slots.clone());
                            tokio::spawn(serve_connection(stream, Peer::Tcp, app.clone(), admission, slots));
                        }
                        Err(_) => {
                            let refusal = ApiError::new(
                                ErrorCode::Unavailable,
                                "too many TCP connections without a token; retry",
                            );
                            refuse(stream, refusal, &refusing);
                        }
                    },
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

/// Refused connections answered at once; beyond them a refused connection
/// is closed without an answer.
const REFUSALS: usize = 256;
/// How long a refused connection is given to take its answer.
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// Answers a connection it will not serve with the refusal as JSON and
/// closes it, reading what the client sent meanwhile (closing on unread
/// data would reset the connection before the client reads the answer).
fn refuse<S>(mut stream: S, refusal: ApiError, refusing: &Arc<Semaphore>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Ok(permit) = refusing.clone().try_acquire_owned() else { return };
    let (status, body) = routes::error_json(refusal);
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    tokio::spawn(async move {
        let answer = async {
            stream.write_all(&[head.into_bytes(), body].concat()).await?;
            stream.shutdown().await?;
            let mut sink = [0u8; 4096];
            while stream.read(&mut sink).await? > 0 {}
            std::io::Result::Ok(())
        };
        let _ = tokio::time::timeout(REFUSAL_TIME, answer).await;
        drop(permit);
    });
}

/// Serves one connection. A TCP one (`slots` given) counts as a stranger's
/// until a request shows a valid token, then as that user's; it is cut when
/// no token came within [`AUTH_TIMEOUT`].
async fn serve_connection<S>(stream: S, peer: Peer, app: Arc<App>, admission: Admission, slots: Option<Arc<Slots>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let admission = Arc::new(Mutex::new(admission));
    app.connection_opened();
    let busy = app.activity.begin();
    let service = {
        let (app, admission) = (app.clone(), admission.clone());
        service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let (app, admission, slots) = (app.clone(), admission.clone(), slots.clone());
            async move {
                if let Some(slots) = &slots
                    && let Err(refusal) = admit(&app, &admission, slots, req.headers())
                {
                    return Ok::<_, Infallible>(routes::error_reply(refusal));
                }
                Ok::<_, Infallible>(routes::handle(app, peer, req).await)
            }
        })
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(JsonErrors::new(stream)), service);
    let unauthenticated = async {
        tokio::time::sleep(AUTH_TIMEOUT).await;
        if !matches!(*admission.lock().unwrap_or_else(|e| e.into_inner()), Admission::Stranger { .. }) {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = conn => {
            if let Err(e) = result {
                tracing::debug!("connection ended: {e}");
            }
        }
        () = unauthenticated => tracing::debug!("TCP connection cut: no token within {AUTH_TIMEOUT:?}"),
    }
    drop(busy);
    app.connection_closed();
}

/// Moves a stranger's connection to the user its request's token names.
/// Requests without a valid token go on to be refused by the routes (401).
fn admit(
    app: &App,
    admission: &Mutex<Admission>,
    slots: &Arc<Slots>,
    headers: &hyper::HeaderMap,
) -> std::result::Result<(), ApiError> {
    let mut admission = admission.lock().unwrap_or_else(|e| e.into_inner());
    if matches!(*admission, Admission::User { .. }) {
        return Ok(());
    }
    let Some(uid) = routes::token_owner(app, headers) else {
        return Ok(());
    };
    *admission = Admission::User { _slot: slots.take(uid)? };
    Ok(())
}
