//! The HTTP API of the original Styxy (docs/api.md), bugs fixed: every
//! error is JSON with a stable code, `lock_id` everywhere, 404/403/413 where
//! they belong.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use styxy_core::engine::parse_port;
use styxy_proto::api::{
    AllocationsResponse, AuditResponse, CheckResponse, CircuitBreakersResponse, CleanupRequest, CleanupResponse,
    ConfigResponse, EndInstanceResponse, ErrorBody, ErrorCode, HealthResponse, HeartbeatResponse, InstancesResponse,
    Listener, MAX_BODY, MetricGauges, ObservationStats, ObservationStatsResponse, ObserveAllResponse,
    ObservePortResponse, PortUse, RegisterForObserverRequest, RegisterInstanceRequest, RegisterInstanceResponse,
    ScanResponse, ServiceTypeView, StatusResponse, StopResponse, SuggestResponse, TokenResponse, UndoAutoTypeResponse,
};
use styxy_proto::caller::Caller;
use styxy_proto::error::{ApiError, printable};
use styxy_proto::timestamp::Timestamp;

use crate::app::{App, Mode};
use crate::metrics::{Exposition, negotiate, rss_bytes};

/// How the peer reached us: the kernel names Unix peers; TCP peers must
/// present a token with every request.
#[derive(Debug, Clone, Copy)]
pub enum Peer {
    /// `start_time` pins the connecting process (see `styxy_proto::caller::Caller`).
    Unix {
        uid: u32,
        pid: Option<u32>,
        start_time: Option<u64>,
    },
    Tcp,
}

type Reply = Response<Full<Bytes>>;
type Result<T> = std::result::Result<T, ApiError>;

/// A body that trickles in slower than this is refused.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// `/scan` looks at this many ports at most.
const SCAN_MAX: u32 = 1000;

pub async fn handle(app: Arc<App>, peer: Peer, req: Request<Incoming>) -> Reply {
    app.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let _busy = app.activity.begin();
    match route(&app, peer, req).await {
        Ok(reply) => reply,
        Err(e) => {
            app.metrics.count_error(e.code);
            error_reply(e)
        }
    }
}

pub fn error_reply(e: ApiError) -> Reply {
    let (status, bytes) = error_json(e);
    bytes_reply(status, bytes)
}

/// An error's status and JSON body.
pub fn error_json(e: ApiError) -> (StatusCode, Vec<u8>) {
    let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ErrorBody { success: false, error: e.code, message: e.message, context: e.context };
    (status, json_bytes(&body))
}

fn json_bytes<T: Serialize>(body: &T) -> Vec<u8> {
    serde_json::to_vec(body).unwrap_or_else(|_| br#"{"success":false,"error":"internal"}"#.to_vec())
}

fn json_reply<T: Serialize>(status: StatusCode, body: &T) -> Reply {
    bytes_reply(status, json_bytes(body))
}

fn bytes_reply(status: StatusCode, bytes: Vec<u8>) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn ok<T: Serialize>(body: &T) -> Result<Reply> {
    Ok(json_reply(StatusCode::OK, body))
}

fn err(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message)
}

/// The caller's identity: the kernel's word on the Unix socket, the token's
/// owner on TCP.
fn caller(app: &App, peer: Peer, headers: &HeaderMap) -> Result<Caller> {
    match peer {
        Peer::Unix { uid, pid, start_time } => Ok(Caller { uid, pid, start_time }),
        Peer::Tcp => {
            let Some(key) = presented_token(headers) else {
                return Err(err(
                    ErrorCode::Unauthorized,
                    "authentication required: send Authorization: Bearer <token> or X-API-Key: <token> (get yours with `styxy token`)",
                ));
            };
            let uid =
                app.tokens.uid_for(key.trim()).ok_or_else(|| err(ErrorCode::Unauthorized, "invalid API token"))?;
            Ok(Caller { uid, pid: None, start_time: None })
        }
    }
}

/// The token a TCP request presents, if any.
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
}

/// The user whose valid token a TCP request presents.
pub fn token_owner(app: &App, headers: &HeaderMap) -> Option<u32> {
    app.tokens.uid_for(presented_token(headers)?.trim())
}

async fn read_json<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T> {
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let collected = tokio::time::timeout(BODY_TIMEOUT, Limited::new(req.into_body(), MAX_BODY).collect()).await;
    let bytes = match collected {
        Err(_) => return Err(err(ErrorCode::Timeout, "the request body did not arrive in time")),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => return Err(too_large()),
        Ok(Err(e)) => return Err(err(ErrorCode::InvalidJson, format!("could not read the request body: {e}"))),
        Ok(Ok(c)) => c.to_bytes(),
    };
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
    serde_json::from_slice(bytes).map_err(|e| {
        let code = match e.classify() {
            serde_json::error::Category::Data => ErrorCode::InvalidField,
            _ => ErrorCode::InvalidJson,
        };
        err(code, format!("invalid request body: {e}"))
    })
}

fn too_large() -> ApiError {
    err(ErrorCode::PayloadTooLarge, format!("request body larger than {MAX_BODY} bytes"))
}

fn query(req: &Request<Incoming>) -> BTreeMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn port_arg(s: &str) -> Result<u16> {
    parse_port(&serde_json::Value::String(s.to_string()))
}

/// What a request asks for, named by method and path: the one table of the
/// API's routes (a path that only other methods serve gets 405, not 404).
enum Route<'p> {
    Status,
    Allocate,
    Release(&'p str),
    Check(&'p str),
    Allocations,
    Config,
    InstanceList,
    InstanceRegister,
    Heartbeat(&'p str),
    EndInstance(&'p str),
    RegisterForObserver,
    Cleanup,
    Scan,
    Health,
    Metrics,
    Audit,
    CircuitBreakers,
    ObserveAll,
    ObservePort(&'p str),
    ObservationStats,
    Suggest(&'p str),
    Token,
    UndoAutoType(&'p str),
    DaemonStop,
}

fn resolve<'p>(method: &Method, segments: &[&'p str]) -> Option<Route<'p>> {
    Some(match (method, segments) {
        (&Method::GET, ["status"]) => Route::Status,
        (&Method::POST, ["allocate"]) => Route::Allocate,
        (&Method::DELETE, ["allocate", lock_id]) => Route::Release(lock_id),
        (&Method::GET, ["check", port]) => Route::Check(port),
        (&Method::GET, ["allocations"]) => Route::Allocations,
        (&Method::GET, ["config"]) => Route::Config,
        (&Method::GET, ["instance", "list"]) => Route::InstanceList,
        (&Method::POST, ["instance", "register"]) => Route::InstanceRegister,
        (&Method::PUT, ["instance", id, "heartbeat"]) => Route::Heartbeat(id),
        (&Method::DELETE, ["instance", id]) => Route::EndInstance(id),
        (&Method::POST, ["register-instance"]) => Route::RegisterForObserver,
        (&Method::POST, ["cleanup"]) => Route::Cleanup,
        (&Method::GET, ["scan"]) => Route::Scan,
        (&Method::GET, ["health"]) => Route::Health,
        (&Method::GET, ["metrics"]) => Route::Metrics,
        (&Method::GET, ["audit"]) => Route::Audit,
        (&Method::GET, ["circuit-breakers"]) => Route::CircuitBreakers,
        (&Method::GET, ["observe", "all"]) => Route::ObserveAll,
        (&Method::GET, ["observe", port]) => Route::ObservePort(port),
        (&Method::GET, ["observation-stats"]) => Route::ObservationStats,
        (&Method::GET, ["suggest", service_type]) => Route::Suggest(service_type),
        (&Method::GET, ["token"]) => Route::Token,
        (&Method::DELETE, ["config", "auto-types", name]) => Route::UndoAutoType(name),
        (&Method::POST, ["daemon", "stop"]) => Route::DaemonStop,
        _ => return None,
    })
}

async fn route(app: &Arc<App>, peer: Peer, req: Request<Incoming>) -> Result<Reply> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let route = resolve(req.method(), &segments);
    if let Some(Route::Status) = route {
        return status(app);
    }
    let who = caller(app, peer, req.headers())?;
    let Some(route) = route else {
        let known = [Method::GET, Method::POST, Method::PUT, Method::DELETE]
            .iter()
            .any(|method| resolve(method, &segments).is_some());
        return Err(if known {
            err(ErrorCode::MethodNotAllowed, format!("{} is not allowed on {path}", req.method()))
        } else {
            err(ErrorCode::NotFound, format!("no route {} {}", req.method(), printable(&path, 200)))
        });
    };
    match route {
        Route::Status => status(app),
        Route::Allocate => ok(&app.allocate(&who, &read_json(req).await?).await?),
        Route::Release(lock_id) => ok(&app.release(&who, lock_id)?),
        Route::Check(port) => check(app, &who, port_arg(port)?).await,
        Route::Allocations => ok(&AllocationsResponse { allocations: app.engine().list(&who)? }),
        Route::Config => config(app),
        Route::InstanceList => ok(&InstancesResponse { instances: app.engine().instances(&who)? }),
        Route::InstanceRegister => {
            let body: RegisterInstanceRequest = read_json(req).await?;
            let i = app.engine().register_instance(&body, &who)?;
            let message = format!("Instance {} registered", i.instance_id);
            ok(&RegisterInstanceResponse { success: true, instance_id: i.instance_id, message })
        }
        Route::Heartbeat(id) => {
            let i = app.engine().heartbeat(id, &who)?;
            ok(&HeartbeatResponse {
                success: true,
                instance_id: i.instance_id,
                last_heartbeat: i.last_heartbeat.into(),
            })
        }
        Route::EndInstance(id) => {
            let released = app.engine().end_instance(id, &who)?;
            ok(&EndInstanceResponse { success: true, instance_id: id.to_string(), released })
        }
        Route::RegisterForObserver => register_for_observer(app, &who, read_json(req).await?),
        Route::Cleanup => {
            let body: CleanupRequest = read_json(req).await?;
            let cleaned = app.engine().cleanup(body.force, &who)?;
            app.metrics.reclaimed.fetch_add(cleaned as u64, Ordering::Relaxed);
            let message = if body.force {
                format!("Force cleanup released {cleaned} allocation(s)")
            } else {
                format!("Cleaned up {cleaned} stale allocation(s)")
            };
            ok(&CleanupResponse { success: true, cleaned: cleaned as u64, message })
        }
        Route::Scan => scan(app, &who, &query(&req)).await,
        Route::Health => health(app),
        Route::Metrics => metrics(app, &query(&req), req.headers()),
        Route::Audit => {
            let recent_events = app.engine().state().audit.iter().cloned().map(Into::into).collect();
            ok(&AuditResponse { recent_events })
        }
        Route::CircuitBreakers => ok(&CircuitBreakersResponse::default()),
        Route::ObserveAll => {
            let observations = app.observe_all(&who).await?;
            ok(&ObserveAllResponse { total: observations.len() as u64, observations })
        }
        Route::ObservePort(port) => {
            let port = port_arg(port)?;
            let listeners = app.observe_port(port, &who).await?;
            ok(&ObservePortResponse { port, bound: !listeners.is_empty(), listeners })
        }
        Route::ObservationStats => observation_stats(app, &who).await,
        Route::Suggest(service_type) => {
            let count = match query(&req).get("count") {
                None => 5,
                Some(c) => c
                    .parse::<usize>()
                    .ok()
                    .filter(|c| (1..=100).contains(c))
                    .ok_or_else(|| err(ErrorCode::InvalidField, "count must be a whole number from 1 to 100"))?,
            };
            let suggestions = app.engine().suggest(service_type, count)?;
            ok(&SuggestResponse {
                service_type: service_type.to_string(),
                count: suggestions.len() as u64,
                message: format!("Found {} available port(s)", suggestions.len()),
                suggestions,
            })
        }
        Route::Token => match peer {
            Peer::Unix { .. } => {
                let token = app.tokens.token_for(who.uid).map_err(|e| err(ErrorCode::Internal, format!("{e:#}")))?;
                ok(&TokenResponse { success: true, uid: who.uid, token })
            }
            Peer::Tcp => Err(err(ErrorCode::Forbidden, "tokens are handed out on the Unix socket only")),
        },
        Route::UndoAutoType(name) => {
            let t = app.engine().undo_auto_type(name, &who)?;
            tracing::info!(service_type = %t.service_type, uid = who.uid, "auto-allocated type removed");
            let message = format!(
                "Removed auto-allocated service type '{}'; range {}-{} is free again",
                t.service_type, t.range[0], t.range[1]
            );
            ok(&UndoAutoTypeResponse { success: true, service_type: t.service_type, range: t.range, message })
        }
        Route::DaemonStop => match app.mode {
            Mode::User if who.uid == styxy_proto::paths::uid() || who.is_root() => {
                app.request_stop();
                ok(&StopResponse { success: true, message: "allocator stopping".into() })
            }
            Mode::User => Err(err(ErrorCode::Forbidden, "only the allocator's own user may stop it")),
            Mode::System => Err(err(ErrorCode::Forbidden, "the system allocator is managed by systemd: use systemctl")),
        },
    }
}

async fn check(app: &Arc<App>, who: &Caller, port: u16) -> Result<Reply> {
    let allocated_to = app.engine().allocation_on(port, who)?;
    let listeners = app.observe_port(port, who).await?;
    let busy = !listeners.is_empty() || app.engine().port_busy_in_kernel(port);
    let available = allocated_to.is_none() && !busy;
    let PortUse { allocated_to, system_usage, listeners, .. } = PortUse::new(port, allocated_to, listeners);
    ok(&CheckResponse { port, available, allocated_to, system_usage, listeners })
}

async fn scan(app: &Arc<App>, who: &Caller, q: &BTreeMap<String, String>) -> Result<Reply> {
    let bound = |key: &str, default: u16| -> Result<u16> { q.get(key).map_or(Ok(default), |v| port_arg(v)) };
    let start = bound("start", 3000)?;
    let end = bound("end", 9999)?;
    if start > end {
        return Err(err(ErrorCode::InvalidField, format!("start {start} is above end {end}")));
    }
    let end = (start as u32 + SCAN_MAX - 1).min(end as u32) as u16;
    let mut by_port: BTreeMap<u16, Vec<Listener>> = BTreeMap::new();
    for l in app.observe_all(who).await? {
        if (start..=end).contains(&l.port) {
            by_port.entry(l.port).or_default().push(l);
        }
    }
    let allocations = app.engine().list(who)?;
    let mut ports: BTreeMap<u16, PortUse> = BTreeMap::new();
    for a in allocations.into_iter().filter(|a| (start..=end).contains(&a.allocation.port)) {
        let port = a.allocation.port;
        ports.insert(port, PortUse::new(port, Some(a), by_port.remove(&port).unwrap_or_default()));
    }
    for (port, ls) in by_port {
        ports.insert(port, PortUse::new(port, None, ls));
    }
    ok(&ScanResponse { scan_range: format!("{start}-{end}"), ports_in_use: ports.into_values().collect() })
}

fn status(app: &App) -> Result<Reply> {
    let engine = app.engine();
    ok(&StatusResponse {
        status: "running".into(),
        mode: mode_name(app.mode).into(),
        pid: std::process::id(),
        uptime: app.started.elapsed().as_secs_f64(),
        allocations: engine.state().allocations.len() as u64,
        instances: engine.state().instances.len() as u64,
        generation: engine.state().generation,
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::User => "user",
        Mode::System => "system",
    }
}

fn config(app: &App) -> Result<Reply> {
    let engine = app.engine();
    let autos = &engine.state().auto_types;
    let service_types = engine
        .config()
        .service_types
        .iter()
        .map(|(name, t)| {
            let auto = autos.get(name);
            let view = ServiceTypeView {
                service_type: t.clone(),
                auto_allocated: auto.is_some(),
                auto_allocated_at: auto.map(|a| a.created_at.into()),
            };
            (name.clone(), view)
        })
        .collect();
    ok(&ConfigResponse { service_types, auto_allocation: engine.config().auto_allocation.clone() })
}

fn health(app: &App) -> Result<Reply> {
    let engine = app.engine();
    let state = engine.state();
    ok(&HealthResponse {
        status: "healthy".into(),
        timestamp: Timestamp::now(),
        uptime: app.started.elapsed().as_secs_f64(),
        version: env!("CARGO_PKG_VERSION").into(),
        mode: mode_name(app.mode).into(),
        pid: std::process::id(),
        allocations: state.allocations.len() as u64,
        instances: state.instances.len() as u64,
        generation: state.generation,
        state_dir: engine.store().dir().to_path_buf(),
        service_types_loaded: engine.config().service_types.len() as u64,
        memory_rss_bytes: rss_bytes(),
    })
}

fn metrics(app: &App, q: &BTreeMap<String, String>, headers: &HeaderMap) -> Result<Reply> {
    let accept = headers.get(hyper::header::ACCEPT).and_then(|v| v.to_str().ok());
    let exposition =
        negotiate(q.get("format").map(String::as_str), accept).map_err(|m| err(ErrorCode::InvalidField, m))?;
    let gauges = {
        let engine = app.engine();
        MetricGauges {
            allocations: engine.state().allocations.len() as f64,
            instances: engine.state().instances.len() as f64,
            uptime_seconds: app.started.elapsed().as_secs_f64(),
            resident_memory_bytes: rss_bytes() as f64,
            open_connections: app.open_connections() as f64,
        }
    };
    if exposition == Exposition::Prometheus {
        let mut r = Response::new(Full::new(Bytes::from(app.metrics.prometheus(&gauges))));
        r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
        return Ok(r);
    }
    ok(&app.metrics.json(gauges))
}

/// The original's observer-only registration, now the same expiring
/// registry as `/instance/*`.
fn register_for_observer(app: &App, who: &Caller, body: serde_json::Value) -> Result<Reply> {
    // Any object is a request (its mistyped fields count as absent); the
    // original refused only what is not an object.
    if !body.is_object() {
        return Err(err(ErrorCode::InvalidField, "body must be a JSON object"));
    }
    let body: RegisterForObserverRequest =
        serde_json::from_value(body).map_err(|e| err(ErrorCode::InvalidField, format!("invalid request body: {e}")))?;
    let instance_id = match (body.instance_id, body.pid) {
        (Some(id), _) => id,
        (None, Some(pid)) => format!("ldpreload-{pid}"),
        (None, None) => {
            return Err(err(ErrorCode::InvalidField, "instance_id is required (or provide pid for auto-generation)"));
        }
    };
    let req = RegisterInstanceRequest {
        instance_id: Some(instance_id),
        working_directory: body.project_path,
        project_root: None,
        ttl_secs: None,
        metadata: body.metadata,
    };
    let i = app.engine().register_instance(&req, who)?;
    let message = "Instance registered successfully".into();
    ok(&RegisterInstanceResponse { success: true, instance_id: i.instance_id, message })
}

async fn observation_stats(app: &App, who: &Caller) -> Result<Reply> {
    let listeners = app.observe_all(who).await?;
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_user: BTreeMap<String, u64> = BTreeMap::new();
    for l in &listeners {
        *by_type.entry(l.service_type.clone().unwrap_or_else(|| "unknown".into())).or_default() += 1;
        *by_user.entry(l.user.clone().unwrap_or_else(|| l.uid.to_string())).or_default() += 1;
    }
    ok(&ObservationStatsResponse {
        stats: ObservationStats { total_ports: listeners.len() as u64, by_service_type: by_type, by_user },
        timestamp: Timestamp::now(),
    })
}
