//! The service type of a process from its command line, as the observer
//! guesses it for a listener it did not allocate.

use crate::container::{container_service_type, docker_run_image};
use crate::lex;
use crate::resolve::{Launch, find_tool, program_name, resolve};

/// The service type of a process, from its command line
/// (`/proc/PID/cmdline`). A package-manager run (`npm run dev`) is read by
/// its script name, since the package.json is not at hand; `sh -c STRING`
/// by the script text. None when nothing is recognised.
///
/// An empty argv (kernel thread, zombie) has no answer; callers that know
/// the executable may pass `[exe]` instead.
pub fn infer_service_type<S: AsRef<str>>(argv: &[S]) -> Option<&'static str> {
    let resolved = resolve(argv);
    match resolved.launch {
        Launch::Tool { tool, args, .. } if tool.name == "docker-run" => {
            let args = &argv[args..];
            let image = docker_run_image(args).map(|i| args[i].as_ref());
            Some(container_service_type(image, None).unwrap_or(tool.service_type))
        }
        Launch::Tool { tool, .. } => Some(tool.service_type),
        Launch::Script(call) => {
            // `pnpm vite`, `yarn next dev` run a binary when there is no
            // such script.
            find_tool(&argv[call.script..]).map(|t| t.service_type).or_else(|| script_service_type(&call.name))
        }
        Launch::Shell { string } => infer_from_script(argv[string].as_ref()),
        Launch::Program { .. } | Launch::Other => docker_proxy_service_type(argv),
    }
}

/// Guess from a script name alone: what `npm run <name>` usually starts.
fn script_service_type(name: &str) -> Option<&'static str> {
    let base = name.split([':', '-']).next().unwrap_or(name);
    Some(match base {
        "dev" | "start" | "serve" | "develop" | "preview" | "watch" | "web" | "frontend" | "client" => "dev",
        "storybook" | "sb" => "storybook",
        "docs" | "doc" => "docs",
        "api" | "server" | "backend" => "api",
        "emulators" | "functions" => "functions",
        "test" | "e2e" | "cypress" | "playwright" => "test",
        _ => return None,
    })
}

/// The service type of the first tool a shell script starts, for argv of
/// the form `sh -c SCRIPT` (no package.json is read).
fn infer_from_script(script: &str) -> Option<&'static str> {
    lex::parse(script).into_iter().find_map(|c| {
        let texts: Vec<&str> = c.words.iter().map(|w| w.text.as_str()).collect();
        infer_service_type(&texts)
    })
}

/// Docker publishes ports through `docker-proxy … -container-port 5432`:
/// a well-known container port names the service.
fn docker_proxy_service_type<S: AsRef<str>>(argv: &[S]) -> Option<&'static str> {
    let first = argv.first()?.as_ref();
    if program_name(first, argv.len() == 1) != "docker-proxy" {
        return None;
    }
    let at = argv.iter().position(|a| a.as_ref() == "-container-port")?;
    let port = argv.get(at + 1)?.as_ref().parse().ok()?;
    container_service_type(None, Some(port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::tool_for_image;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    fn infer(words: &[&str]) -> Option<&'static str> {
        infer_service_type(&argv(words))
    }

    fn tool(words: &[&str]) -> Option<&'static str> {
        find_tool(&argv(words)).map(|t| t.name)
    }

    #[test]
    fn proc_cmdlines_of_python_servers() {
        assert_eq!(infer(&["/usr/bin/python3", "-m", "http.server", "8000"]), Some("api"));
        assert_eq!(tool(&["/usr/bin/python3", "-m", "http.server", "8000"]), Some("http.server"));
        assert_eq!(tool(&["python2.7", "-m", "SimpleHTTPServer"]), Some("http.server"));
        // The original needed the word "django" and missed this one.
        assert_eq!(infer(&["python3", "manage.py", "runserver"]), Some("api"));
        assert_eq!(infer(&["/usr/bin/python3", "/srv/app/manage.py", "runserver", "0.0.0.0:8001"]), Some("api"));
        assert_eq!(infer(&["python3", "manage.py", "migrate"]), None);
        assert_eq!(
            tool(&["/home/u/.venv/bin/python", "/home/u/.venv/bin/uvicorn", "main:app", "--reload"]),
            Some("uvicorn")
        );
        assert_eq!(tool(&["python", "-u", "-m", "uvicorn", "main:app"]), Some("uvicorn"));
        assert_eq!(tool(&["/usr/bin/python3", "/usr/local/bin/gunicorn", "-w", "4", "app:app"]), Some("gunicorn"));
        assert_eq!(tool(&["python3", "-m", "flask", "run"]), Some("flask"));
        assert_eq!(tool(&["/usr/bin/python3", "/usr/local/bin/jupyter-lab", "--no-browser"]), Some("jupyter"));
        assert_eq!(tool(&["jupyter", "notebook"]), Some("jupyter"));
        assert_eq!(tool(&["/usr/bin/python3", "/home/u/.local/bin/mkdocs", "serve"]), Some("mkdocs"));
        assert_eq!(tool(&["/usr/bin/python3", "/home/u/.local/bin/mkdocs", "build"]), None);
        assert_eq!(infer(&["/opt/venv/bin/python", "/opt/venv/bin/chroma", "run", "--path", "/data"]), Some("ai"));
        assert_eq!(infer(&["python3", "script.py"]), None);
        assert_eq!(infer(&["python3", "-c", "import http.server"]), None);
    }

    #[test]
    fn proc_cmdlines_of_node_servers() {
        assert_eq!(infer(&["node", "/home/u/app/node_modules/.bin/vite"]), Some("dev"));
        assert_eq!(tool(&["node", "/home/u/app/node_modules/vite/bin/vite.js", "--port", "5174"]), Some("vite"));
        assert_eq!(tool(&["/usr/bin/node", "/home/u/app/node_modules/.bin/vite", "build"]), None);
        assert_eq!(tool(&["node", "/app/node_modules/.pnpm/vite@5.2.0/node_modules/vite/bin/vite.js"]), Some("vite"));
        assert_eq!(tool(&["node", "/app/node_modules/react-scripts/scripts/start.js"]), Some("react-scripts"));
        assert_eq!(tool(&["node", "/app/node_modules/next/dist/server/lib/start-server.js"]), Some("next-server"));
        assert_eq!(tool(&["next-server (v14.2.3)"]), Some("next-server"));
        assert_eq!(tool(&["node", "/app/node_modules/.bin/next", "dev", "-p", "3001"]), Some("next"));
        assert_eq!(infer(&["node", "/app/node_modules/.bin/storybook", "dev", "-p", "6006"]), Some("storybook"));
        assert_eq!(infer(&["node", "/app/node_modules/@storybook/cli/bin/index.js", "dev"]), Some("storybook"));
        assert_eq!(infer(&["node", "/usr/local/bin/firebase", "emulators:start"]), Some("functions"));
        assert_eq!(infer(&["node", "/app/node_modules/.bin/docusaurus", "start"]), Some("docs"));
        assert_eq!(infer(&["node", "/usr/lib/node_modules/http-server/bin/http-server", "-p", "8080"]), Some("dev"));
        assert_eq!(infer(&["node", "--inspect", "-r", "ts-node/register", "server.ts"]), None);
        assert_eq!(infer(&["node", "server.js"]), None);
        assert_eq!(tool(&["node", "/usr/bin/npx", "vite"]), Some("vite"));
    }

    #[test]
    fn proc_cmdlines_of_daemons_and_titles() {
        assert_eq!(
            infer(&[
                "/usr/lib/postgresql/15/bin/postgres",
                "-D",
                "/var/lib/postgresql/15/main",
                "-c",
                "config_file=/etc/postgresql/15/main/postgresql.conf"
            ]),
            Some("database")
        );
        assert_eq!(infer(&["postgres: checkpointer "]), Some("database"));
        assert_eq!(infer(&["redis-server *:6379"]), Some("infrastructure"));
        assert_eq!(infer(&["/usr/bin/mongod", "--config", "/etc/mongod.conf"]), Some("database"));
        assert_eq!(infer(&["/usr/local/bin/ollama", "serve"]), Some("ai"));
        assert_eq!(infer(&["ollama", "run", "llama3"]), None);
        assert_eq!(infer(&["puma 6.4.0 (tcp://0.0.0.0:3000) [myapp]"]), Some("api"));
        assert_eq!(infer(&["ruby", "bin/rails", "server"]), Some("api"));
        assert_eq!(infer(&["/usr/bin/ruby", "/usr/local/bin/bundle", "exec", "rails", "s", "-p", "3001"]), Some("api"));
        assert_eq!(infer(&["/usr/sbin/grafana-server", "--config=/etc/grafana/grafana.ini"]), Some("monitoring"));
        assert_eq!(infer(&["/bin/prometheus", "--config.file=/etc/prometheus/prometheus.yml"]), Some("monitoring"));
        assert_eq!(infer(&["php", "-S", "localhost:8000", "-t", "public"]), Some("api"));
        assert_eq!(infer(&["php", "artisan", "serve"]), Some("api"));
        assert_eq!(infer(&["php", "artisan", "migrate"]), None);
        assert_eq!(infer(&["/home/u/.cargo/bin/cargo-leptos", "leptos", "watch"]), Some("dev"));
        assert_eq!(
            infer(&[
                "/usr/bin/docker-proxy",
                "-proto",
                "tcp",
                "-host-ip",
                "0.0.0.0",
                "-host-port",
                "5433",
                "-container-ip",
                "172.17.0.2",
                "-container-port",
                "5432"
            ]),
            Some("database")
        );
        assert_eq!(
            infer(&["/usr/bin/docker-proxy", "-proto", "tcp", "-host-port", "8080", "-container-port", "80"]),
            None
        );
        assert_eq!(infer(&[]), None);
    }

    #[test]
    fn package_manager_runs_are_read_by_script_name() {
        assert_eq!(infer(&["npm", "run", "dev"]), Some("dev"));
        assert_eq!(infer(&["npm", "run", "storybook"]), Some("storybook"));
        assert_eq!(infer(&["npm", "start"]), Some("dev"));
        assert_eq!(infer(&["/usr/bin/node", "/usr/bin/npm", "run", "docs:dev"]), Some("docs"));
        assert_eq!(infer(&["pnpm", "vite"]), Some("dev"));
        assert_eq!(infer(&["yarn", "start:api"]), Some("dev"));
        assert_eq!(infer(&["npm", "run", "build"]), None);
        assert_eq!(infer(&["npm", "install"]), None);
        assert_eq!(infer(&["bun", "test"]), None);
    }

    #[test]
    fn shell_scripts_are_read() {
        assert_eq!(infer(&["/bin/sh", "-c", "cd web && vite --port 3000"]), Some("dev"));
        assert_eq!(infer(&["bash", "-lc", "exec uvicorn main:app"]), Some("api"));
        assert_eq!(infer(&["sh", "-c", "echo vite"]), None);
    }

    #[test]
    fn images_name_their_tools() {
        let name = |i| tool_for_image(i).map(|t| t.name);
        assert_eq!(name("postgres:16-alpine"), Some("postgres"));
        assert_eq!(name("docker.io/library/redis:7"), Some("redis-server"));
        assert_eq!(name("quay.io/keycloak/keycloak:24.0"), Some("keycloak"));
        assert_eq!(name("localhost:5000/postgres"), Some("postgres"));
        assert_eq!(name("ollama/ollama"), Some("ollama"));
        assert_eq!(name("nginx:alpine"), None);
        assert_eq!(name("myorg/postgres-backup"), None);
        assert_eq!(infer(&["docker", "run", "-d", "-p", "5433:5432", "--name", "db", "postgres:16"]), Some("database"));
        assert_eq!(infer(&["docker", "run", "-p", "8080:80", "nginx"]), Some("api"));
    }
}
