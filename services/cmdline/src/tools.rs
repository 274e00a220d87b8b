//! The one table of dev-server tools Styxy knows: their program names,
//! subcommands, port syntax, default ports and container images. Data only;
//! [`crate::resolve`] finds a tool in a command line.

/// How a tool is told which port to take on its command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortSyntax {
    /// `--port N`, `--port=N` or a short alias (`-p N`, `-pN`). The first
    /// name is the one a rewrite adds. `joined`: the value must be attached
    /// with `=` (`esbuild --serve=N`), a bare flag means the default port.
    Flag { names: &'static [&'static str], joined: bool },
    /// A flag whose value is `HOST:PORT` (`gunicorn -b 127.0.0.1:8000`,
    /// `php -S localhost:8000`); a rewrite adds `default_host:N`.
    HostPortFlag { names: &'static [&'static str], default_host: &'static str },
    /// The first positional argument after the subcommand, `PORT` or
    /// `ADDR:PORT` (`python3 -m http.server 8000`, `manage.py runserver 0:8000`).
    Positional,
    /// An environment variable holding the port (`PORT=3001 react-scripts start`).
    Env(&'static str),
    /// An environment variable holding `HOST:PORT` (`OLLAMA_HOST`).
    EnvHostPort { name: &'static str, default_host: &'static str },
    /// Only a configuration file sets the port (firebase.json, grafana.ini).
    ConfigFile,
    /// `docker run -p HOST:CONTAINER`: handled by the shell recogniser.
    Publish,
}

/// Which subcommand (first positional argument) makes the tool a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subcommand {
    /// Any arguments: the program itself is the server (`uvicorn`, `postgres`).
    Any,
    /// The first positional must be one of these (`next dev`, `hugo server`).
    OneOf(&'static [&'static str]),
    /// No positional, or a first positional that is none of these
    /// (`vite`, `vite src`, but not `vite build`).
    NoneOf(&'static [&'static str]),
    /// Any positional is one of these (maven goals: `mvn clean spring-boot:run`).
    Goal(&'static [&'static str]),
}

/// One dev-server tool.
#[derive(Debug, PartialEq, Eq)]
pub struct Tool {
    /// Stable id, e.g. `vite`, `http.server`, `django-runserver`.
    pub name: &'static str,
    /// Program names as they appear after resolution: executable basenames,
    /// `python -m` modules, npm package names, script basenames (`manage.py`).
    pub programs: &'static [&'static str],
    pub subcommand: Subcommand,
    /// When not empty, one of these options must be present (`php -S`,
    /// `esbuild --serve`, `vitest --ui`).
    pub requires: &'static [&'static str],
    /// One of the built-in service types.
    pub service_type: &'static str,
    /// The port the tool takes when nobody says otherwise.
    pub default_port: Option<u16>,
    pub port: PortSyntax,
    /// An environment variable the tool also reads its port from, besides
    /// its flag (`PORT` for `next`, `rails`).
    pub port_env: Option<&'static str>,
    /// The flag that stops the tool from silently moving to the next free
    /// port when its port is taken (`vite --strictPort`); a rewrite adds it,
    /// or the server would not be where Styxy said.
    pub strict_flag: Option<&'static str>,
    /// Options that take a separate value, so that value is not mistaken
    /// for a subcommand or a positional port.
    pub value_flags: &'static [&'static str],
    /// Path suffixes of scripts the tool runs in a child `node` process,
    /// which is the process that actually listens.
    pub child_scripts: &'static [&'static str],
    /// Container images (`postgres`, `jaegertracing/all-in-one`) that run
    /// this tool, for `docker run` and compose services.
    pub images: &'static [&'static str],
}

const BASE: Tool = Tool {
    name: "",
    programs: &[],
    subcommand: Subcommand::Any,
    requires: &[],
    service_type: "dev",
    default_port: None,
    port: PortSyntax::Flag { names: &["--port"], joined: false },
    port_env: None,
    strict_flag: None,
    value_flags: &[],
    child_scripts: &[],
    images: &[],
};

const fn flag(names: &'static [&'static str]) -> PortSyntax {
    PortSyntax::Flag { names, joined: false }
}

const PORT_FLAGS: PortSyntax = flag(&["--port", "-p"]);
const LONG_PORT_FLAG: PortSyntax = flag(&["--port"]);

/// The table. Defaults are the tools' documented defaults; a `service_type`
/// is one of the 17 built-in types.
pub static TOOLS: &[Tool] = &[
    // ---- front-end dev servers (dev) ----
    Tool {
        name: "vite",
        programs: &["vite"],
        subcommand: Subcommand::NoneOf(&["build", "optimize", "preview"]),
        default_port: Some(5173),
        strict_flag: Some("--strictPort"),
        value_flags: &["--host", "--config", "-c", "--mode", "-m", "--base", "--logLevel", "-l"],
        ..BASE
    },
    Tool {
        name: "vite-preview",
        programs: &["vite"],
        subcommand: Subcommand::OneOf(&["preview"]),
        default_port: Some(4173),
        strict_flag: Some("--strictPort"),
        ..BASE
    },
    Tool {
        name: "next",
        programs: &["next"],
        subcommand: Subcommand::OneOf(&["dev", "start"]),
        default_port: Some(3000),
        port: flag(&["-p", "--port"]),
        port_env: Some("PORT"),
        value_flags: &["-H", "--hostname"],
        ..BASE
    },
    // A running Next.js server renames itself (`next-server (v14.2.3)`),
    // or runs as a child script of `next dev`.
    Tool {
        name: "next-server",
        programs: &["next-server"],
        default_port: Some(3000),
        port: flag(&["-p", "--port"]),
        port_env: Some("PORT"),
        child_scripts: &["next/dist/server/lib/start-server.js"],
        ..BASE
    },
    Tool {
        name: "react-scripts",
        programs: &["react-scripts"],
        subcommand: Subcommand::OneOf(&["start"]),
        default_port: Some(3000),
        port: PortSyntax::Env("PORT"),
        child_scripts: &["react-scripts/scripts/start.js"],
        ..BASE
    },
    Tool {
        name: "webpack-dev-server",
        programs: &["webpack-dev-server"],
        default_port: Some(8080),
        value_flags: &["--config", "-c", "--host", "--mode"],
        ..BASE
    },
    Tool {
        name: "webpack-serve",
        programs: &["webpack", "webpack-cli"],
        subcommand: Subcommand::OneOf(&["serve", "server", "s"]),
        default_port: Some(8080),
        value_flags: &["--config", "-c", "--host", "--mode"],
        ..BASE
    },
    Tool {
        name: "nuxt",
        programs: &["nuxt", "nuxi", "nuxt-cli"],
        subcommand: Subcommand::OneOf(&["dev", "preview"]),
        default_port: Some(3000),
        port: PORT_FLAGS,
        port_env: Some("PORT"),
        ..BASE
    },
    Tool {
        name: "astro",
        programs: &["astro"],
        subcommand: Subcommand::OneOf(&["dev", "start", "preview"]),
        default_port: Some(4321),
        value_flags: &["--host", "--root", "--config"],
        ..BASE
    },
    // Remix on Vite is a Vite server; classic `remix dev` runs the app
    // server, which reads PORT.
    Tool {
        name: "remix-vite",
        programs: &["remix"],
        subcommand: Subcommand::OneOf(&["vite:dev"]),
        default_port: Some(5173),
        strict_flag: Some("--strictPort"),
        ..BASE
    },
    Tool {
        name: "remix",
        programs: &["remix"],
        subcommand: Subcommand::OneOf(&["dev"]),
        default_port: Some(3000),
        port: PortSyntax::Env("PORT"),
        ..BASE
    },
    Tool {
        name: "remix-serve",
        programs: &["remix-serve"],
        default_port: Some(3000),
        port: PortSyntax::Env("PORT"),
        ..BASE
    },
    Tool {
        name: "svelte-kit",
        programs: &["svelte-kit"],
        subcommand: Subcommand::OneOf(&["dev", "preview"]),
        default_port: Some(3000),
        ..BASE
    },
    Tool {
        name: "vue-cli-service",
        programs: &["vue-cli-service"],
        subcommand: Subcommand::OneOf(&["serve"]),
        default_port: Some(8080),
        ..BASE
    },
    Tool {
        name: "angular",
        programs: &["ng"],
        subcommand: Subcommand::OneOf(&["serve", "s"]),
        default_port: Some(4200),
        ..BASE
    },
    Tool {
        name: "parcel",
        programs: &["parcel"],
        subcommand: Subcommand::NoneOf(&["build", "watch", "help"]),
        default_port: Some(1234),
        port: PORT_FLAGS,
        value_flags: &["--dist-dir", "-d", "--public-url", "--target", "--host", "--config"],
        ..BASE
    },
    Tool {
        name: "esbuild",
        programs: &["esbuild"],
        requires: &["--serve"],
        default_port: Some(8000),
        port: PortSyntax::Flag { names: &["--serve"], joined: true },
        ..BASE
    },
    Tool {
        name: "gatsby",
        programs: &["gatsby"],
        subcommand: Subcommand::OneOf(&["develop"]),
        default_port: Some(8000),
        port: PORT_FLAGS,
        value_flags: &["-H", "--host"],
        ..BASE
    },
    Tool {
        name: "expo",
        programs: &["expo"],
        subcommand: Subcommand::OneOf(&["start"]),
        default_port: Some(8081),
        ..BASE
    },
    Tool {
        name: "react-native",
        programs: &["react-native"],
        subcommand: Subcommand::OneOf(&["start"]),
        default_port: Some(8081),
        ..BASE
    },
    Tool {
        name: "sanity",
        programs: &["sanity"],
        subcommand: Subcommand::OneOf(&["dev", "start", "preview"]),
        default_port: Some(3333),
        ..BASE
    },
    Tool {
        name: "trunk",
        programs: &["trunk"],
        subcommand: Subcommand::OneOf(&["serve"]),
        default_port: Some(8080),
        ..BASE
    },
    Tool {
        name: "cargo-leptos",
        programs: &["cargo-leptos"],
        subcommand: Subcommand::OneOf(&["watch", "serve"]),
        default_port: Some(3000),
        port: PortSyntax::EnvHostPort { name: "LEPTOS_SITE_ADDR", default_host: "127.0.0.1" },
        ..BASE
    },
    // Static file servers from npm.
    Tool {
        name: "http-server",
        programs: &["http-server"],
        default_port: Some(8080),
        port: flag(&["-p", "--port"]),
        value_flags: &["-a", "-d", "-c", "-e", "-S", "-C", "-K", "-P", "--proxy"],
        ..BASE
    },
    Tool {
        name: "serve",
        programs: &["serve"],
        default_port: Some(3000),
        port: flag(&["-l", "--listen"]),
        strict_flag: Some("--no-port-switching"),
        value_flags: &["-c", "--config"],
        ..BASE
    },
    Tool {
        name: "live-server",
        programs: &["live-server"],
        default_port: Some(8080),
        port: PortSyntax::Flag { names: &["--port"], joined: true },
        ..BASE
    },
    Tool {
        name: "browser-sync",
        programs: &["browser-sync"],
        subcommand: Subcommand::OneOf(&["start"]),
        service_type: "proxy",
        default_port: Some(3000),
        value_flags: &["--proxy", "--server", "--files", "--config", "-c"],
        ..BASE
    },
    Tool {
        name: "jupyter",
        programs: &["jupyter-notebook", "jupyter-lab", "jupyter-server", "notebook", "jupyterlab", "jupyter_server"],
        default_port: Some(8888),
        port: flag(&["--port", "--ServerApp.port", "--NotebookApp.port"]),
        ..BASE
    },
    Tool {
        name: "streamlit",
        programs: &["streamlit"],
        subcommand: Subcommand::OneOf(&["run"]),
        default_port: Some(8501),
        port: flag(&["--server.port"]),
        ..BASE
    },
    Tool {
        name: "gradio",
        programs: &["gradio"],
        default_port: Some(7860),
        port: PortSyntax::Env("GRADIO_SERVER_PORT"),
        ..BASE
    },
    // ---- API / back-end servers (api) ----
    Tool {
        name: "http.server",
        programs: &["http.server", "SimpleHTTPServer"],
        service_type: "api",
        default_port: Some(8000),
        port: PortSyntax::Positional,
        value_flags: &["-b", "--bind", "-d", "--directory", "-p", "--protocol"],
        ..BASE
    },
    Tool {
        name: "uvicorn",
        programs: &["uvicorn"],
        service_type: "api",
        default_port: Some(8000),
        port: LONG_PORT_FLAG,
        value_flags: &["--host", "--uds", "--fd", "--app-dir", "--workers", "--env-file", "--log-level", "--root-path"],
        ..BASE
    },
    Tool {
        name: "fastapi",
        programs: &["fastapi"],
        subcommand: Subcommand::OneOf(&["dev", "run"]),
        service_type: "api",
        default_port: Some(8000),
        port: LONG_PORT_FLAG,
        value_flags: &["--host", "--app", "--root-path"],
        ..BASE
    },
    Tool {
        name: "gunicorn",
        programs: &["gunicorn"],
        service_type: "api",
        default_port: Some(8000),
        port: PortSyntax::HostPortFlag { names: &["--bind", "-b"], default_host: "127.0.0.1" },
        port_env: Some("PORT"),
        value_flags: &[
            "-w",
            "--workers",
            "-k",
            "--worker-class",
            "-c",
            "--config",
            "-t",
            "--timeout",
            "--chdir",
            "--log-level",
        ],
        ..BASE
    },
    Tool {
        name: "hypercorn",
        programs: &["hypercorn"],
        service_type: "api",
        default_port: Some(8000),
        port: PortSyntax::HostPortFlag { names: &["--bind", "-b"], default_host: "127.0.0.1" },
        value_flags: &["-w", "--workers", "-k", "--worker-class", "-c", "--config"],
        ..BASE
    },
    Tool {
        name: "daphne",
        programs: &["daphne"],
        service_type: "api",
        default_port: Some(8000),
        port: PORT_FLAGS,
        value_flags: &["-b", "--bind", "-u", "--unix-socket"],
        ..BASE
    },
    Tool {
        name: "waitress",
        programs: &["waitress-serve"],
        service_type: "api",
        default_port: Some(8080),
        port: PortSyntax::Flag { names: &["--port"], joined: true },
        ..BASE
    },
    Tool {
        name: "flask",
        programs: &["flask"],
        subcommand: Subcommand::OneOf(&["run"]),
        service_type: "api",
        default_port: Some(5000),
        port: PORT_FLAGS,
        port_env: Some("FLASK_RUN_PORT"),
        value_flags: &["--app", "-A", "-h", "--host", "--cert", "--key"],
        ..BASE
    },
    // `manage.py runserver` needs no "django" anywhere in the command: the
    // original missed `python3 manage.py runserver` for that reason.
    Tool {
        name: "django-runserver",
        programs: &["manage.py", "django-admin", "django-admin.py", "django"],
        subcommand: Subcommand::OneOf(&["runserver", "runserver_plus"]),
        service_type: "api",
        default_port: Some(8000),
        port: PortSyntax::Positional,
        value_flags: &["--settings", "--pythonpath", "-v", "--verbosity"],
        ..BASE
    },
    Tool {
        name: "rails",
        programs: &["rails"],
        subcommand: Subcommand::OneOf(&["s", "server"]),
        service_type: "api",
        default_port: Some(3000),
        port: PORT_FLAGS,
        port_env: Some("PORT"),
        value_flags: &["-b", "--binding", "-e", "--environment", "-u", "--using", "-c", "--config", "-P", "--pid"],
        ..BASE
    },
    Tool {
        name: "puma",
        programs: &["puma"],
        service_type: "api",
        default_port: Some(9292),
        port: PORT_FLAGS,
        port_env: Some("PORT"),
        value_flags: &["-b", "--bind", "-C", "--config", "-e", "--environment", "-w", "--workers", "-t", "--threads"],
        ..BASE
    },
    Tool {
        name: "rackup",
        programs: &["rackup"],
        service_type: "api",
        default_port: Some(9292),
        port: PORT_FLAGS,
        value_flags: &["-o", "--host", "-s", "--server", "-E", "--env"],
        ..BASE
    },
    Tool {
        name: "php-builtin",
        programs: &["php"],
        requires: &["-S"],
        service_type: "api",
        default_port: None,
        port: PortSyntax::HostPortFlag { names: &["-S"], default_host: "localhost" },
        value_flags: &["-t", "-c", "-d"],
        ..BASE
    },
    Tool {
        name: "artisan-serve",
        programs: &["artisan"],
        subcommand: Subcommand::OneOf(&["serve"]),
        service_type: "api",
        default_port: Some(8000),
        port: LONG_PORT_FLAG,
        value_flags: &["--host"],
        ..BASE
    },
    Tool {
        name: "json-server",
        programs: &["json-server"],
        service_type: "api",
        default_port: Some(3000),
        port: PORT_FLAGS,
        value_flags: &["-H", "--host", "-s", "--static", "-r", "--routes", "-c", "--config"],
        ..BASE
    },
    Tool {
        name: "nest",
        programs: &["nest"],
        subcommand: Subcommand::OneOf(&["start"]),
        service_type: "api",
        default_port: Some(3000),
        port: PortSyntax::Env("PORT"),
        ..BASE
    },
    Tool {
        name: "strapi",
        programs: &["strapi"],
        subcommand: Subcommand::OneOf(&["develop", "dev", "start"]),
        service_type: "api",
        default_port: Some(1337),
        port: PortSyntax::Env("PORT"),
        ..BASE
    },
    Tool {
        name: "deno-serve",
        programs: &["deno"],
        subcommand: Subcommand::OneOf(&["serve"]),
        service_type: "api",
        default_port: Some(8000),
        port: LONG_PORT_FLAG,
        value_flags: &["--host"],
        ..BASE
    },
    Tool {
        name: "phoenix",
        programs: &["mix"],
        subcommand: Subcommand::OneOf(&["phx.server"]),
        service_type: "api",
        default_port: Some(4000),
        port: PortSyntax::Env("PORT"),
        ..BASE
    },
    Tool {
        name: "spring-boot",
        programs: &["mvn", "mvnw", "gradle", "gradlew"],
        subcommand: Subcommand::Goal(&["spring-boot:run", "bootRun"]),
        service_type: "api",
        default_port: Some(8080),
        port: PortSyntax::Env("SERVER_PORT"),
        ..BASE
    },
    // ---- serverless emulators (functions) ----
    Tool {
        name: "firebase-emulators",
        programs: &["firebase"],
        subcommand: Subcommand::OneOf(&["emulators:start", "emulators:exec"]),
        service_type: "functions",
        // The Emulator UI; the other emulators' ports are in firebase.json.
        default_port: Some(4000),
        port: PortSyntax::ConfigFile,
        value_flags: &["--only", "--project", "-P", "--import", "--export-on-exit", "--config"],
        ..BASE
    },
    Tool {
        name: "wrangler",
        programs: &["wrangler"],
        subcommand: Subcommand::OneOf(&["dev"]),
        service_type: "functions",
        default_port: Some(8787),
        port: LONG_PORT_FLAG,
        value_flags: &["--ip", "--config", "-c", "--env", "-e"],
        ..BASE
    },
    Tool {
        name: "vercel",
        programs: &["vercel", "vc"],
        subcommand: Subcommand::OneOf(&["dev"]),
        service_type: "functions",
        default_port: Some(3000),
        port: flag(&["--listen", "-l"]),
        ..BASE
    },
    Tool {
        name: "netlify",
        programs: &["netlify", "ntl"],
        subcommand: Subcommand::OneOf(&["dev"]),
        service_type: "functions",
        default_port: Some(8888),
        port: PORT_FLAGS,
        value_flags: &["-c", "--command", "--target-port", "-d", "--dir", "-f", "--functions"],
        ..BASE
    },
    // ---- component workshops (storybook) ----
    Tool {
        name: "storybook",
        programs: &["storybook", "sb", "@storybook/cli"],
        subcommand: Subcommand::OneOf(&["dev"]),
        service_type: "storybook",
        default_port: Some(6006),
        port: flag(&["-p", "--port"]),
        value_flags: &["-c", "--config-dir", "-h", "--host", "-o", "--output-dir"],
        ..BASE
    },
    Tool {
        name: "start-storybook",
        programs: &["start-storybook"],
        service_type: "storybook",
        default_port: Some(6006),
        port: flag(&["-p", "--port"]),
        value_flags: &["-c", "--config-dir", "-h", "--host", "-s", "--static-dir"],
        ..BASE
    },
    // ---- documentation (docs) ----
    Tool {
        name: "docusaurus",
        programs: &["docusaurus"],
        subcommand: Subcommand::OneOf(&["start", "serve"]),
        service_type: "docs",
        default_port: Some(3000),
        value_flags: &["--host", "--config", "--locale"],
        ..BASE
    },
    Tool {
        name: "mkdocs",
        programs: &["mkdocs"],
        subcommand: Subcommand::OneOf(&["serve"]),
        service_type: "docs",
        default_port: Some(8000),
        port: PortSyntax::HostPortFlag { names: &["--dev-addr", "-a"], default_host: "127.0.0.1" },
        value_flags: &["-f", "--config-file", "-t", "--theme"],
        ..BASE
    },
    Tool {
        name: "jekyll",
        programs: &["jekyll"],
        subcommand: Subcommand::OneOf(&["serve", "server", "s"]),
        service_type: "docs",
        default_port: Some(4000),
        port: flag(&["--port", "-P"]),
        value_flags: &["-H", "--host", "-s", "--source", "-d", "--destination", "--config"],
        ..BASE
    },
    Tool {
        name: "hugo",
        programs: &["hugo"],
        subcommand: Subcommand::OneOf(&["server", "serve"]),
        service_type: "docs",
        default_port: Some(1313),
        port: PORT_FLAGS,
        value_flags: &["--bind", "-s", "--source", "--config", "-d", "--destination", "-b", "--baseURL"],
        ..BASE
    },
    Tool {
        name: "zola",
        programs: &["zola"],
        subcommand: Subcommand::OneOf(&["serve"]),
        service_type: "docs",
        default_port: Some(1111),
        port: PORT_FLAGS,
        value_flags: &["-i", "--interface", "-r", "--root", "-c", "--config", "-u", "--base-url"],
        ..BASE
    },
    Tool {
        name: "mdbook",
        programs: &["mdbook"],
        subcommand: Subcommand::OneOf(&["serve"]),
        service_type: "docs",
        default_port: Some(3000),
        port: PORT_FLAGS,
        value_flags: &["-n", "--hostname", "-d", "--dest-dir"],
        ..BASE
    },
    Tool {
        name: "sphinx-autobuild",
        programs: &["sphinx-autobuild", "sphinx_autobuild"],
        service_type: "docs",
        default_port: Some(8000),
        port: LONG_PORT_FLAG,
        value_flags: &["--host", "-b", "--ignore", "--watch"],
        ..BASE
    },
    Tool {
        name: "vuepress",
        programs: &["vuepress"],
        subcommand: Subcommand::OneOf(&["dev"]),
        service_type: "docs",
        default_port: Some(8080),
        port: PORT_FLAGS,
        ..BASE
    },
    Tool {
        name: "vitepress",
        programs: &["vitepress"],
        subcommand: Subcommand::NoneOf(&["build", "init", "preview"]),
        service_type: "docs",
        default_port: Some(5173),
        strict_flag: Some("--strictPort"),
        ..BASE
    },
    Tool {
        name: "eleventy",
        programs: &["eleventy", "@11ty/eleventy"],
        requires: &["--serve"],
        service_type: "docs",
        default_port: Some(8080),
        port: PortSyntax::Flag { names: &["--port"], joined: true },
        ..BASE
    },
    // ---- test tools (test) ----
    Tool {
        name: "cypress",
        programs: &["cypress", "Cypress"],
        subcommand: Subcommand::OneOf(&["open", "run"]),
        service_type: "test",
        // Cypress serves the app under test on a random port unless told.
        default_port: None,
        port: PORT_FLAGS,
        value_flags: &["-b", "--browser", "-s", "--spec", "-C", "--config-file", "-P", "--project", "-e", "--env"],
        ..BASE
    },
    Tool {
        name: "playwright-report",
        programs: &["playwright"],
        subcommand: Subcommand::OneOf(&["show-report"]),
        service_type: "test",
        default_port: Some(9323),
        value_flags: &["--host"],
        ..BASE
    },
    Tool {
        name: "playwright-ui",
        programs: &["playwright"],
        subcommand: Subcommand::OneOf(&["test"]),
        requires: &["--ui", "--ui-port"],
        service_type: "test",
        default_port: None,
        port: PortSyntax::Flag { names: &["--ui-port"], joined: true },
        ..BASE
    },
    Tool {
        name: "vitest-ui",
        programs: &["vitest"],
        requires: &["--ui"],
        service_type: "test",
        default_port: Some(51204),
        port: PortSyntax::Flag { names: &["--api.port"], joined: true },
        ..BASE
    },
    // ---- databases and infrastructure ----
    Tool {
        name: "postgres",
        programs: &["postgres", "postmaster"],
        service_type: "database",
        default_port: Some(5432),
        port: flag(&["-p"]),
        value_flags: &["-D", "-c", "-h", "-k", "-B", "-N"],
        images: &["postgres", "postgis/postgis", "pgvector/pgvector", "timescale/timescaledb"],
        ..BASE
    },
    Tool {
        name: "mysqld",
        programs: &["mysqld", "mariadbd", "mysqld_safe"],
        service_type: "database",
        default_port: Some(3306),
        port: PortSyntax::Flag { names: &["--port", "-P"], joined: true },
        images: &["mysql", "mariadb"],
        ..BASE
    },
    Tool {
        name: "mongod",
        programs: &["mongod"],
        service_type: "database",
        default_port: Some(27017),
        port: LONG_PORT_FLAG,
        value_flags: &["--dbpath", "--bind_ip", "--config", "-f", "--replSet", "--logpath"],
        images: &["mongo", "mongodb/mongodb-community-server"],
        ..BASE
    },
    // Redis is infrastructure: that type's range (6370–6399) is built
    // around 6379.
    Tool {
        name: "redis-server",
        programs: &["redis-server", "valkey-server"],
        service_type: "infrastructure",
        default_port: Some(6379),
        port: LONG_PORT_FLAG,
        value_flags: &["--bind", "--dir", "--requirepass"],
        images: &["redis", "redis/redis-stack", "redis/redis-stack-server", "valkey/valkey"],
        ..BASE
    },
    Tool {
        name: "memcached",
        programs: &["memcached"],
        service_type: "infrastructure",
        default_port: Some(11211),
        port: flag(&["-p", "--port"]),
        value_flags: &["-l", "--listen", "-m", "-c", "-u", "-U", "-t"],
        images: &["memcached"],
        ..BASE
    },
    Tool {
        name: "nats-server",
        programs: &["nats-server"],
        service_type: "messaging",
        default_port: Some(4222),
        port: PORT_FLAGS,
        value_flags: &["-a", "--addr", "-c", "--config", "-m", "--http_port", "-n", "--name"],
        images: &["nats"],
        ..BASE
    },
    Tool {
        name: "rabbitmq",
        programs: &["rabbitmq-server"],
        service_type: "messaging",
        default_port: Some(5672),
        port: PortSyntax::Env("RABBITMQ_NODE_PORT"),
        images: &["rabbitmq"],
        ..BASE
    },
    Tool {
        name: "keycloak",
        programs: &["kc.sh", "kc"],
        subcommand: Subcommand::OneOf(&["start-dev", "start"]),
        service_type: "auth",
        default_port: Some(8080),
        port: PortSyntax::Flag { names: &["--http-port"], joined: true },
        images: &["keycloak/keycloak"],
        ..BASE
    },
    // ---- AI ----
    Tool {
        name: "ollama",
        programs: &["ollama"],
        subcommand: Subcommand::OneOf(&["serve", "runner"]),
        service_type: "ai",
        default_port: Some(11434),
        port: PortSyntax::EnvHostPort { name: "OLLAMA_HOST", default_host: "127.0.0.1" },
        images: &["ollama/ollama"],
        ..BASE
    },
    Tool {
        name: "chroma",
        programs: &["chroma"],
        subcommand: Subcommand::OneOf(&["run"]),
        service_type: "ai",
        default_port: Some(8000),
        port: LONG_PORT_FLAG,
        value_flags: &["--path", "--host", "--config-path", "--log-path"],
        images: &["chromadb/chroma"],
        ..BASE
    },
    // ---- monitoring ----
    Tool {
        name: "grafana",
        programs: &["grafana-server", "grafana"],
        subcommand: Subcommand::NoneOf(&["cli"]),
        service_type: "monitoring",
        default_port: Some(3000),
        port: PortSyntax::Env("GF_SERVER_HTTP_PORT"),
        value_flags: &["--config", "--homepath"],
        images: &["grafana/grafana", "grafana/grafana-oss", "grafana/grafana-enterprise"],
        ..BASE
    },
    Tool {
        name: "prometheus",
        programs: &["prometheus"],
        service_type: "monitoring",
        default_port: Some(9090),
        port: PortSyntax::HostPortFlag { names: &["--web.listen-address"], default_host: "0.0.0.0" },
        value_flags: &["--config.file", "--storage.tsdb.path"],
        images: &["prom/prometheus"],
        ..BASE
    },
    Tool {
        name: "jaeger",
        programs: &["jaeger-all-in-one", "jaeger-query"],
        service_type: "monitoring",
        // The UI; the collector ports (4317, 4318, 14268) come with it.
        default_port: Some(16686),
        port: PortSyntax::HostPortFlag { names: &["--query.http-server.host-port"], default_host: "" },
        images: &["jaegertracing/all-in-one"],
        ..BASE
    },
    Tool {
        name: "tensorboard",
        programs: &["tensorboard"],
        service_type: "monitoring",
        default_port: Some(6006),
        port: LONG_PORT_FLAG,
        value_flags: &["--logdir", "--host", "--bind_all"],
        ..BASE
    },
    // ---- containers: ports come from -p / the compose file ----
    Tool {
        name: "docker-run",
        programs: &["docker", "podman"],
        subcommand: Subcommand::OneOf(&["run"]),
        service_type: "api",
        default_port: None,
        port: PortSyntax::Publish,
        ..BASE
    },
    Tool {
        name: "docker-compose",
        programs: &["docker-compose", "podman-compose"],
        subcommand: Subcommand::OneOf(&["up", "start", "run"]),
        service_type: "api",
        default_port: None,
        port: PortSyntax::Publish,
        value_flags: &["-f", "--file", "-p", "--project-name", "--profile", "--env-file"],
        ..BASE
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_a_built_in_type_and_a_unique_name() {
        let builtin = styxy_core::config::Config::builtin();
        for (i, t) in TOOLS.iter().enumerate() {
            assert!(builtin.service_types.contains_key(t.service_type), "{} has type {}", t.name, t.service_type);
            assert!(!t.programs.is_empty(), "{} has no program", t.name);
            assert!(TOOLS[..i].iter().all(|o| o.name != t.name), "duplicate {}", t.name);
        }
    }
}
