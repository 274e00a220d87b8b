//! `styxy env`: a scope's port map (docs/design.md, "Scopes") for what the
//! preload does not reach: a browser, a config file, a tool. The same map
//! is what the hooks tell the agent about its worktree.

use crate::Ctx;
use crate::cli::EXIT_OK;
use crate::output::{Failure, print, print_json};
use serde_json::json;
use std::path::{Path, PathBuf};
use styxy_proto::api::{AllocationView, AllocationsResponse};
use styxy_proto::scope;

/// One server of a scope: the port its clients ask for, the one it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub canonical: u16,
    pub actual: u16,
    pub service_type: String,
    pub service_name: String,
}

/// The servers `uid` runs in `scope`, by canonical port (the lowest actual
/// port when several share one).
pub fn routes(allocations: &[AllocationView], uid: u32, scope: &str) -> Vec<Route> {
    let mut routes: Vec<Route> = allocations
        .iter()
        .map(|v| &v.allocation)
        .filter(|a| a.owner.uid == uid && a.scope.as_deref() == Some(scope))
        .map(|a| Route {
            canonical: a.requested_port.unwrap_or(a.port),
            actual: a.port,
            service_type: a.service_type.clone(),
            service_name: a.service_name.clone(),
        })
        .collect();
    routes.sort_by_key(|r| (r.canonical, r.actual));
    routes.dedup_by_key(|r| r.canonical);
    routes
}

/// The scope `--scope DIR` names (the worktree or project holding DIR, else
/// DIR itself), or this process's.
fn scope_of(dir: Option<&Path>) -> Result<PathBuf, Failure> {
    let Some(dir) = dir else {
        return scope::current().ok_or_else(|| {
            Failure::local("not_found", "no scope here: not in a git worktree or project; give --scope DIR")
        });
    };
    let dir = std::path::absolute(dir)
        .map_err(|e| Failure::local("invalid_field", format!("cannot resolve {}: {e}", dir.display())))?;
    Ok(scope::of_dir(&dir).unwrap_or(dir))
}

/// Shell lines for `eval "$(styxy env)"`: `STYXY_PORT_<canonical>=<actual>`
/// and `STYXY_URL_<canonical>=http://localhost:<actual>`, then one export.
pub fn shell_lines(routes: &[Route]) -> String {
    let mut out = String::new();
    let mut names = Vec::new();
    for r in routes {
        out.push_str(&format!("STYXY_PORT_{}={}\n", r.canonical, r.actual));
        out.push_str(&format!("STYXY_URL_{}=http://localhost:{}\n", r.canonical, r.actual));
        names.push(format!("STYXY_PORT_{0} STYXY_URL_{0}", r.canonical));
    }
    if !names.is_empty() {
        out.push_str(&format!("export {}\n", names.join(" ")));
    }
    out
}

pub fn env(ctx: &Ctx, dir: Option<&Path>) -> Result<u8, Failure> {
    let scope = scope_of(dir)?;
    let scope = scope.to_string_lossy();
    let listed: AllocationsResponse = ctx.client()?.get("/allocations")?;
    let routes = routes(&listed.allocations, styxy_proto::paths::uid(), &scope);
    if ctx.json {
        let ports: Vec<_> = routes
            .iter()
            .map(|r| {
                json!({
                    "canonical": r.canonical,
                    "actual": r.actual,
                    "url": format!("http://localhost:{}", r.actual),
                    "service_type": r.service_type,
                    "service_name": r.service_name,
                })
            })
            .collect();
        print_json(&json!({"scope": scope, "ports": ports}));
    } else {
        print(&shell_lines(&routes));
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use styxy_proto::model::{Allocation, LeaseKind, Owner};

    fn server(port: u16, canonical: Option<u16>, uid: u32, scope: &str) -> AllocationView {
        AllocationView {
            allocation: Allocation {
                requested_port: canonical,
                scope: Some(scope.into()),
                ..Allocation::new(
                    port,
                    "api",
                    "backend",
                    Owner { uid, pid: Some(7), start_time: None },
                    LeaseKind::Process,
                )
            }
            .into(),
            user: None,
            process: None,
        }
    }

    #[test]
    fn a_scope_map_is_its_users_servers_in_that_scope_as_shell_lines() {
        let listed = [
            server(8001, Some(8000), 1000, "/src/shop-b"),
            server(3001, Some(3000), 1000, "/src/shop-b"),
            server(8002, Some(8000), 1001, "/src/shop-b"),
            server(8000, None, 1000, "/src/shop"),
        ];
        let routes = routes(&listed, 1000, "/src/shop-b");
        assert_eq!(routes.iter().map(|r| (r.canonical, r.actual)).collect::<Vec<_>>(), [(3000, 3001), (8000, 8001)]);
        assert_eq!(
            shell_lines(&routes),
            "STYXY_PORT_3000=3001\nSTYXY_URL_3000=http://localhost:3001\n\
             STYXY_PORT_8000=8001\nSTYXY_URL_8000=http://localhost:8001\n\
             export STYXY_PORT_3000 STYXY_URL_3000 STYXY_PORT_8000 STYXY_URL_8000\n"
        );
        assert_eq!(shell_lines(&[]), "");
    }
}
