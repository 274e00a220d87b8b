//! Containers on a command line: where the image is among `docker run`'s
//! arguments, which tool an image runs, and a container's service type.

use crate::tools::{TOOLS, Tool};

/// The service type of a container: from its image (`postgres:16`), else
/// from a well-known container port (`-container-port 5432`): a port that
/// is the default of exactly one tool, and that tool runs in containers.
pub(crate) fn container_service_type(image: Option<&str>, container_port: Option<u16>) -> Option<&'static str> {
    let by_image = image.and_then(tool_for_image);
    let by_port = || {
        let port = container_port?;
        let mut owners = TOOLS.iter().filter(|t| t.default_port == Some(port));
        let owner = owners.next()?;
        (owners.next().is_none() && !owner.images.is_empty()).then_some(owner)
    };
    by_image.or_else(by_port).map(|t| t.service_type)
}

/// The index of the image in the arguments of `docker run` (which start
/// with `run`), after docker's own options.
pub(crate) fn docker_run_image<S: AsRef<str>>(args: &[S]) -> Option<usize> {
    let run = args.iter().position(|a| a.as_ref() == "run")?;
    let mut j = run + 1;
    while let Some(a) = args.get(j).map(AsRef::as_ref) {
        if a.starts_with('-') && a.len() > 1 {
            j += if docker_run_takes_value(a) { 2 } else { 1 };
            continue;
        }
        return Some(j);
    }
    None
}

/// Options of `docker run` whose value is the next word.
pub(crate) fn docker_run_takes_value(arg: &str) -> bool {
    if arg.contains('=') {
        return false;
    }
    const VALUE: &[&str] = &[
        "-p",
        "--publish",
        "-e",
        "--env",
        "--env-file",
        "-v",
        "--volume",
        "--name",
        "-w",
        "--workdir",
        "-u",
        "--user",
        "--network",
        "--net",
        "-l",
        "--label",
        "--entrypoint",
        "--mount",
        "--platform",
        "--restart",
        "-h",
        "--hostname",
        "--add-host",
        "--cpus",
        "-m",
        "--memory",
        "--gpus",
        "--pull",
        "--device",
        "--expose",
        "--network-alias",
        "--ulimit",
        "--shm-size",
        "--cap-add",
        "--cap-drop",
        "--security-opt",
        "--log-driver",
        "--log-opt",
        "--health-cmd",
        "--ip",
        "--dns",
        "--tmpfs",
        "--volumes-from",
        "--pid",
        "--ipc",
        "--stop-signal",
        "--runtime",
        "--cidfile",
        "--link",
        "--label-file",
        "--group-add",
        "--userns",
        "--uts",
        "--cgroupns",
        "-a",
        "--attach",
    ];
    VALUE.contains(&arg)
}

/// The tool an image runs: `postgres:16`, `docker.io/library/redis`,
/// `quay.io/keycloak/keycloak:24.0` → their table entries.
pub(crate) fn tool_for_image(image: &str) -> Option<&'static Tool> {
    let without_digest = image.split('@').next().unwrap_or(image);
    // A tag follows the last ':' unless that ':' belongs to a registry port.
    let without_tag = match without_digest.rfind(':') {
        Some(c) if !without_digest[c..].contains('/') => &without_digest[..c],
        _ => without_digest,
    };
    let mut path = without_tag;
    // Drop a registry host (has a '.' or ':' or is localhost) and `library/`.
    if let Some((host, rest)) = path.split_once('/')
        && (host.contains('.') || host.contains(':') || host == "localhost")
    {
        path = rest;
    }
    let path = path.strip_prefix("library/").unwrap_or(path);
    TOOLS.iter().find(|t| t.images.contains(&path))
}
