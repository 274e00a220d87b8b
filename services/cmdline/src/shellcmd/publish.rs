//! Ports containers publish: `docker run -p HOST:CONTAINER …` and the
//! compose file of `docker compose up`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::port::digits;
use super::start::{Edit, Plan, PortSource, ServerStart};
use crate::container::{container_service_type, docker_run_image, docker_run_takes_value};
use crate::lex::Word;
use crate::resolve::first_positional;
use crate::tools::Tool;

/// One start per TCP port `docker run` publishes (`-p`, `--publish`,
/// `-pH:C`, `--publish=H:C`). `args` start at `run`.
pub(super) fn run_starts(tool: &'static Tool, args: &[Word], span: Range<usize>) -> Vec<ServerStart> {
    let texts: Vec<&str> = args.iter().map(|w| w.text.as_str()).collect();
    let end = docker_run_image(&texts).unwrap_or(args.len());
    let image = texts.get(end).copied();
    let mut starts = Vec::new();
    let mut j = 1;
    while j < end {
        let t = texts[j];
        let value = match t {
            "-p" | "--publish" => args.get(j + 1).map(|w| (w, 0)),
            _ if t.starts_with("--publish=") => Some((&args[j], "--publish=".len())),
            _ if t.starts_with("-p") && t.len() > 2 && !t.starts_with("--") => Some((&args[j], 2)),
            _ => None,
        };
        if let Some((word, offset)) = value
            && let Some(p) = parse_publish(&word.text[offset..])
        {
            let service_type = container_service_type(image, p.container).unwrap_or(tool.service_type);
            let plan = match (&p.host, word.src) {
                (Host::Port(_, range), 0) => word
                    .source_range(offset + range.start..offset + range.end)
                    .map_or(Plan::None, |r| Plan::Edit(vec![Edit::port_at(r)])),
                (Host::Random, 0) if !word.text[offset..].contains(':') => {
                    word.source_range(offset..offset).map_or(Plan::None, |r| {
                        Plan::Edit(vec![Edit::insert(r.start, String::new(), true, ":".to_string())])
                    })
                }
                _ => Plan::None,
            };
            let (port, port_source) = match p.host {
                Host::Port(port, _) => (Some(port), PortSource::Flag),
                Host::Random | Host::Range => (None, PortSource::Unknown),
            };
            starts.push(ServerStart { tool, service_type, port, port_source, span: span.clone(), plan });
        }
        j += if matches!(t, "-p" | "--publish") || docker_run_takes_value(t) { 2 } else { 1 };
    }
    starts
}

#[derive(Debug, PartialEq, Eq)]
enum Host {
    /// A fixed host port, and where it is written in the value.
    Port(u16, Range<usize>),
    /// Docker picks the host port (`-p 80`, `-p 127.0.0.1::80`).
    Random,
    /// A range (`8000-8010:80`): one of them.
    Range,
}

#[derive(Debug, PartialEq, Eq)]
struct Publish {
    host: Host,
    container: Option<u16>,
}

/// `80`, `8080:80`, `127.0.0.1:8080:80`, `[::1]:8080:80`, `8080:80/tcp`;
/// None for UDP and SCTP, which hold no TCP port.
fn parse_publish(value: &str) -> Option<Publish> {
    let (spec, proto) = value.split_once('/').unwrap_or((value, "tcp"));
    if proto != "tcp" {
        return None;
    }
    let Some(colon) = spec.rfind(':') else {
        return Some(Publish { host: Host::Random, container: digits(spec) });
    };
    let container = digits(&spec[colon + 1..]);
    let rest = &spec[..colon];
    let host_start = match rest.rfind(':') {
        // `[::1]:8080`: the host port follows the address's last colon.
        Some(c) if !rest[c..].contains(']') => c + 1,
        _ if rest.starts_with('[') || rest.contains('.') => rest.len(),
        _ => 0,
    };
    let host = &rest[host_start..];
    let host = if host.is_empty() {
        Host::Random
    } else if host.contains('-') {
        Host::Range
    } else {
        Host::Port(digits(host)?, host_start..rest.len())
    };
    Some(Publish { host, container })
}

/// One start per port a compose file publishes for `docker compose up`
/// (the named services, or all). `args` start after `compose` (or after
/// `docker-compose`). The file is not rewritten: these cannot be moved
/// from the command line.
pub(super) fn compose_starts(
    tool: &'static Tool,
    args: &[Word],
    cwd: Option<&Path>,
    span: Range<usize>,
) -> Vec<ServerStart> {
    let texts: Vec<&str> = args.iter().map(|w| w.text.as_str()).collect();
    let Some(sub) = first_positional(tool, &texts) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    let mut project_dir = cwd.map(Path::to_path_buf);
    let mut j = 0;
    while j < sub {
        match texts[j] {
            "-f" | "--file" => files.extend(texts.get(j + 1).map(PathBuf::from)),
            "--project-directory" => project_dir = texts.get(j + 1).zip(cwd).map(|(d, c)| c.join(d)),
            t if t.starts_with("--file=") => files.push(PathBuf::from(&t["--file=".len()..])),
            _ => {}
        }
        j += 1;
    }
    // Services named after `up`: positionals, skipping option values.
    const VALUE: &[&str] =
        &["--scale", "-t", "--timeout", "--exit-code-from", "--attach", "--no-attach", "--pull", "--wait-timeout"];
    let mut services = Vec::new();
    let mut k = sub + 1;
    while let Some(t) = texts.get(k) {
        if t.starts_with('-') {
            k += if VALUE.contains(t) { 2 } else { 1 };
            continue;
        }
        services.push(*t);
        k += 1;
    }
    let Some(base) = project_dir.or_else(|| cwd.map(Path::to_path_buf)) else {
        return Vec::new();
    };
    let paths: Vec<PathBuf> = if files.is_empty() {
        default_compose_file(&base).into_iter().collect()
    } else {
        files.iter().map(|f| base.join(f)).collect()
    };
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|text| compose_ports(&text))
        .filter(|p| services.is_empty() || services.contains(&p.service.as_str()))
        .map(|p| ServerStart {
            tool,
            service_type: container_service_type(p.image.as_deref(), p.publish.container).unwrap_or(tool.service_type),
            port: match p.publish.host {
                Host::Port(port, _) => Some(port),
                _ => None,
            },
            port_source: match p.publish.host {
                Host::Port(..) => PortSource::ComposeFile,
                _ => PortSource::Unknown,
            },
            span: span.clone(),
            plan: Plan::None,
        })
        .collect()
}

/// Compose looks in the working directory, then its parents.
fn default_compose_file(dir: &Path) -> Option<PathBuf> {
    const NAMES: &[&str] = &["compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"];
    dir.ancestors().flat_map(|d| NAMES.iter().map(move |n| d.join(n))).find(|p| p.is_file())
}

#[derive(Debug, PartialEq, Eq)]
struct ComposePort {
    service: String,
    image: Option<String>,
    publish: Publish,
}

/// The published ports of a compose file, read line by line: short
/// (`- "8080:80"`), long (`- target: 80` / `published: 8080`) and flow
/// (`ports: ["8080:80"]`) syntax; `${VAR:-3000}` takes its default.
fn compose_ports(text: &str) -> Vec<ComposePort> {
    let mut out = Vec::new();
    let mut in_services = false;
    let mut service_indent = None;
    let mut service: Option<String> = None;
    let mut child_indent = None;
    let mut image: Option<String> = None;
    let mut pending: Vec<Publish> = Vec::new();
    let mut ports_indent: Option<usize> = None;
    let mut long: Option<(Option<String>, Option<u16>, bool)> = None; // published, target, udp

    let flush_long = |long: &mut Option<(Option<String>, Option<u16>, bool)>, pending: &mut Vec<Publish>| {
        if let Some((published, target, udp)) = long.take()
            && !udp
        {
            let host = match published.as_deref().and_then(interpolate) {
                Some(p) if p.contains('-') => Host::Range,
                // Compose files are not rewritten: no position is needed.
                Some(p) => digits(&p).map_or(Host::Random, |port| Host::Port(port, 0..0)),
                None => Host::Random,
            };
            pending.push(Publish { host, container: target });
        }
    };
    let finish_service = |service: &mut Option<String>,
                          image: &mut Option<String>,
                          pending: &mut Vec<Publish>,
                          out: &mut Vec<ComposePort>| {
        if let Some(name) = service.take() {
            for publish in pending.drain(..) {
                out.push(ComposePort { service: name.clone(), image: image.clone(), publish });
            }
        }
        *image = None;
        pending.clear();
    };

    for raw_line in text.lines() {
        let line = strip_comment(raw_line);
        let content = line.trim();
        if content.is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if indent == 0 {
            flush_long(&mut long, &mut pending);
            finish_service(&mut service, &mut image, &mut pending, &mut out);
            in_services = content == "services:";
            service_indent = None;
            ports_indent = None;
            continue;
        }
        if !in_services {
            continue;
        }
        let si = *service_indent.get_or_insert(indent);
        if indent <= si {
            flush_long(&mut long, &mut pending);
            finish_service(&mut service, &mut image, &mut pending, &mut out);
            ports_indent = None;
            child_indent = None;
            service = content.strip_suffix(':').map(|n| unquote(n).to_string());
            continue;
        }
        let ci = *child_indent.get_or_insert(indent);
        if let Some(pi) = ports_indent {
            let item = content.strip_prefix("- ").or_else(|| (content == "-").then_some(""));
            if indent > pi || (indent == pi && item.is_some()) {
                match item {
                    Some(item) if is_mapping(item) => {
                        flush_long(&mut long, &mut pending);
                        long = Some((None, None, false));
                        long_key(item, &mut long);
                    }
                    Some(item) => {
                        flush_long(&mut long, &mut pending);
                        pending.extend(interpolate(unquote(item)).as_deref().and_then(parse_publish));
                    }
                    None => long_key(content, &mut long),
                }
                continue;
            }
            flush_long(&mut long, &mut pending);
            ports_indent = None;
        }
        if indent != ci {
            continue;
        }
        if content == "ports:" {
            ports_indent = Some(indent);
        } else if let Some(list) = content.strip_prefix("ports:").map(str::trim).and_then(|l| l.strip_prefix('[')) {
            let list = list.trim_end_matches(']');
            pending.extend(
                list.split(',')
                    .filter_map(|item| interpolate(unquote(item.trim())))
                    .filter_map(|item| parse_publish(&item)),
            );
        } else if let Some(value) = content.strip_prefix("image:") {
            image = Some(unquote(value.trim()).to_string());
        }
    }
    flush_long(&mut long, &mut pending);
    finish_service(&mut service, &mut image, &mut pending, &mut out);
    out
}

/// `target: 80` is a mapping entry; `8080:80` (no space after the colon)
/// is a short port.
fn is_mapping(item: &str) -> bool {
    !item.starts_with(['"', '\'']) && item.contains(": ")
}

fn long_key(entry: &str, long: &mut Option<(Option<String>, Option<u16>, bool)>) {
    let Some((published, target, udp)) = long.as_mut() else {
        return;
    };
    let Some((key, value)) = entry.split_once(':') else {
        return;
    };
    let value = unquote(value.trim());
    match key.trim() {
        "published" => *published = Some(value.to_string()),
        "target" => *target = digits(value),
        "protocol" => *udp = value != "tcp",
        _ => {}
    }
}

fn strip_comment(line: &str) -> &str {
    if line.trim_start().starts_with('#') {
        return "";
    }
    match line.find(" #") {
        Some(at) => &line[..at],
        None => line,
    }
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
        .unwrap_or(s)
}

/// `${WEB_PORT:-3000}:3000` → `3000:3000`; a variable without a default
/// is unknown here.
fn interpolate(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let end = rest[at..].find('}')? + at;
        let inner = &rest[at + 2..end];
        let (_, default) = inner.split_once(":-").or_else(|| inner.split_once('-'))?;
        out.push_str(default);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_values() {
        let host = |v: &str| parse_publish(v).map(|p| p.host);
        assert_eq!(host("8080:80"), Some(Host::Port(8080, 0..4)));
        assert_eq!(host("127.0.0.1:8080:80"), Some(Host::Port(8080, 10..14)));
        assert_eq!(host("[::1]:5433:5432/tcp"), Some(Host::Port(5433, 6..10)));
        assert_eq!(host("80"), Some(Host::Random));
        assert_eq!(host("127.0.0.1::80"), Some(Host::Random));
        assert_eq!(host("8000-8010:80"), Some(Host::Range));
        assert_eq!(host("5353:53/udp"), None);
    }

    #[test]
    fn compose_file_ports() {
        let text = r#"
version: "3.9"
services:
  web:
    build: .
    ports:
      - "3000:3000"   # the app
      - 127.0.0.1:9229:9229
    environment:
      - PORT=3000
  db:
    image: postgres:16
    ports:
    - target: 5432
      published: "${DB_PORT:-5433}"
  cache:
    image: "redis:7"
    ports: ["6380:6379", "1234/udp"]
  worker:
    image: busybox
volumes:
  data:
"#;
        let got: Vec<(String, Option<String>, Option<u16>)> = compose_ports(text)
            .into_iter()
            .map(|p| {
                let host = match p.publish.host {
                    Host::Port(port, _) => Some(port),
                    _ => None,
                };
                (p.service, p.image, host)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("web".to_string(), None, Some(3000)),
                ("web".to_string(), None, Some(9229)),
                ("db".to_string(), Some("postgres:16".to_string()), Some(5433)),
                ("cache".to_string(), Some("redis:7".to_string()), Some(6380)),
            ]
        );
    }
}
