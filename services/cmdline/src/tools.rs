//! The one table of dev-server tools Styxy knows, and how to spot them in a
//! command line.
//!
//! Two readers share it: the observer, which guesses the service type of a
//! listening process from `/proc/PID/cmdline`, and the Claude Code hook
//! (`shellcmd`), which spots a server start in a Bash command and rewrites it
//! for another port in the tool's own syntax. Both go through [`resolve`],
//! which strips wrappers (`env`, `nohup`, `npx`, `bundle exec`…) and
//! interpreters (`node path/to/vite.js`, `python3 -m http.server`) down to
//! the program that will listen.

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

/// Where a command line leads once wrappers and interpreters are stripped.
/// Indices are into the words given to [`resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Launch {
    /// A known tool: `program` is the index of the word naming it (the
    /// script for `node …/vite.js`), `args` the index of its first argument.
    Tool { tool: &'static Tool, program: usize, args: usize },
    /// A package-manager script run (`npm run dev`, `yarn dev`, `deno task x`).
    Script(ScriptCall),
    /// `sh -c STRING` and friends: `string` is the index of the script text.
    Shell { string: usize },
    /// A program that is none of the above (`kill`, `cd`, `concurrently`).
    Program { at: usize },
    /// Nothing to run, or a wrapper missing its command.
    Other,
}

/// A package-manager script run, as word indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScriptCall {
    pub manager: Manager,
    /// The package manager word.
    pub program: usize,
    /// The word naming the script.
    pub script: usize,
    /// The script's name (`npm t` runs `test`).
    pub name: String,
    /// The first argument passed on to the script.
    pub extra: usize,
    /// A `--prefix`/`-C`/`--cwd` directory word.
    pub dir: Option<usize>,
}

/// A JavaScript package manager or task runner that runs named scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Npm,
    Pnpm,
    Yarn,
    Bun,
    Deno,
}

impl Manager {
    /// Whether arguments for the script must follow a `--`
    /// (`npm run dev -- --port 3001`); pnpm, yarn and bun pass them on as is.
    pub fn needs_double_dash(self) -> bool {
        matches!(self, Manager::Npm | Manager::Deno)
    }
}

/// A resolution, plus the environment assignments met on the way
/// (`PORT=1 cmd`, `env PORT=1 …`, `cross-env PORT=1 …`) as word indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub launch: Launch,
    pub env_words: Vec<usize>,
}

/// Resolve a command's words: a process's argv, or a shell simple command
/// without its redirections (leading assignments included).
pub(crate) fn resolve<S: AsRef<str>>(words: &[S]) -> Resolved {
    let words: Vec<&str> = words.iter().map(AsRef::as_ref).collect();
    let mut env_words = Vec::new();
    let launch = Resolver { words: &words, env: &mut env_words }.from(0, 0);
    Resolved { launch, env_words }
}

/// Wrapper and interpreter nesting is shallow in practice; the bound stops
/// a pathological command from looping.
const MAX_DEPTH: usize = 12;

struct Resolver<'w, 'e> {
    words: &'w [&'w str],
    env: &'e mut Vec<usize>,
}

impl<'w> Resolver<'w, '_> {
    fn word(&self, i: usize) -> Option<&'w str> {
        self.words.get(i).copied()
    }

    /// Resolve from word `i`, which names a program.
    fn from(&mut self, i: usize, depth: usize) -> Launch {
        let mut i = i;
        while self.word(i).is_some_and(is_assignment) {
            self.env.push(i);
            i += 1;
        }
        let Some(first) = self.word(i) else {
            return Launch::Other;
        };
        let name = program_name(first, self.words.len() - i == 1);
        self.named(i, name, depth)
    }

    /// Continue at word `to` (a wrapper's command), if there is one.
    fn then(&mut self, from: usize, to: usize, depth: usize) -> Launch {
        if to > from && depth < MAX_DEPTH { self.from(to, depth + 1) } else { Launch::Other }
    }

    /// Resolve word `i`, whose program name is `name`.
    fn named(&mut self, i: usize, name: &str, depth: usize) -> Launch {
        let words = self.words;
        match name {
            "env" => {
                let j = skip_options(words, i + 1, &["-u", "--unset", "-C", "--chdir"]);
                self.then(i, j, depth)
            }
            "nohup" | "time" | "exec" | "command" | "builtin" | "unbuffer" => self.then(i, i + 1, depth),
            "sudo" | "doas" => {
                let j = skip_options(words, i + 1, &["-u", "-g", "-h", "-p", "-C", "-D", "-r", "-t", "-U"]);
                self.then(i, j, depth)
            }
            "nice" => {
                let j = skip_options(words, i + 1, &["-n", "--adjustment"]);
                self.then(i, j, depth)
            }
            "ionice" => {
                let j = skip_options(words, i + 1, &["-c", "-n", "--class", "--classdata"]);
                self.then(i, j, depth)
            }
            "stdbuf" | "setsid" | "xvfb-run" | "dbus-run-session" => {
                let j = skip_options(words, i + 1, &["-s", "-n", "--server-args"]);
                self.then(i, j, depth)
            }
            "timeout" => {
                // Options, then the duration, then the command.
                let j = skip_options(words, i + 1, &["-s", "--signal", "-k", "--kill-after"]);
                self.then(i, j + 1, depth)
            }
            "cross-env" | "cross-env-shell" | "dotenv" | "env-cmd" | "doppler" | "infisical" => {
                let mut j = i + 1;
                if matches!(name, "doppler" | "infisical") {
                    if self.word(j) != Some("run") {
                        return Launch::Other;
                    }
                    j += 1;
                }
                let j = skip_options(
                    words,
                    j,
                    &["-e", "-f", "-c", "--file", "-r", "--env-file", "-p", "--project", "--config"],
                );
                self.then(i, j, depth)
            }
            "bundle" | "poetry" | "pipenv" | "pdm" | "hatch" | "rye" | "uv" | "pixi" | "conda" | "mamba"
            | "micromamba" => {
                // `bundle exec X`, `poetry run X`, `uv run X`, `conda run -n env X`
                if !matches!(self.word(i + 1), Some("exec" | "run")) {
                    return Launch::Other;
                }
                let j = skip_options(
                    words,
                    i + 2,
                    &[
                        "-n",
                        "--name",
                        "-p",
                        "--prefix",
                        "--with",
                        "--python",
                        "--env",
                        "-e",
                        "--project",
                        "--directory",
                        "--package",
                        "--extra",
                        "--group",
                    ],
                );
                self.then(i, j, depth)
            }
            "uvx" | "pipx" => {
                let j = if name == "pipx" {
                    if self.word(i + 1) != Some("run") {
                        return Launch::Other;
                    }
                    i + 2
                } else {
                    i + 1
                };
                let j = skip_options(words, j, &["--from", "--with", "--python", "--spec"]);
                self.then(i, j, depth)
            }
            "npx" | "bunx" | "pnpx" => {
                let j = skip_npx_options(words, i + 1);
                self.then(i, j, depth)
            }
            // `iex -S mix phx.server`
            "iex" if self.word(i + 1) == Some("-S") => self.then(i, i + 2, depth),
            "sh" | "bash" | "zsh" | "dash" | "ksh" | "ash" | "su" => self.shell(i, name),
            "npm" | "pnpm" | "yarn" | "bun" => self.package_manager(i, name, depth),
            "deno" => self.deno(i, depth),
            _ if is_node(name) => {
                let j = skip_interpreter_options(
                    words,
                    i + 1,
                    &[
                        "-r",
                        "--require",
                        "--import",
                        "--loader",
                        "--experimental-loader",
                        "-C",
                        "--conditions",
                        "--title",
                    ],
                    &["-e", "--eval", "-p", "--print", "-"],
                );
                self.script(i, j, depth)
            }
            _ if is_python(name) => self.python(i, depth),
            _ if is_versioned(name, "ruby") || name == "jruby" => {
                let j = skip_interpreter_options(words, i + 1, &["-I", "-r", "-C", "-E"], &["-e", "-"]);
                self.script(i, j, depth)
            }
            _ if is_versioned(name, "php") => {
                if words[i + 1..].contains(&"-S") {
                    tool_launch(name, words, i)
                } else {
                    let j = skip_interpreter_options(
                        words,
                        i + 1,
                        &["-c", "-d", "-z"],
                        &["-r", "-R", "-B", "-E", "-a", "-"],
                    );
                    self.script(i, j, depth)
                }
            }
            // Git-style dispatchers: `cargo leptos watch` runs `cargo-leptos
            // leptos watch`; `jupyter lab` runs `jupyter-lab`.
            "cargo" | "jupyter" => match self.word(i + 1) {
                Some(sub) if !sub.starts_with('-') => {
                    let program = format!("{name}-{sub}");
                    match lookup(&program, words, i + 2) {
                        Some(tool) => Launch::Tool { tool, program: i, args: i + 2 },
                        None => Launch::Other,
                    }
                }
                _ => Launch::Other,
            },
            "cargo-leptos" if self.word(i + 1) == Some("leptos") => match lookup(name, words, i + 2) {
                Some(tool) => Launch::Tool { tool, program: i, args: i + 2 },
                None => Launch::Other,
            },
            // `docker compose up`, `docker container run`
            "docker" | "podman" if matches!(self.word(i + 1), Some("compose" | "container")) => {
                let program = if self.word(i + 1) == Some("compose") { "docker-compose" } else { name };
                match lookup(program, words, i + 2) {
                    Some(tool) => Launch::Tool { tool, program: i, args: i + 2 },
                    None => Launch::Other,
                }
            }
            _ => tool_launch(name, words, i),
        }
    }

    /// `bash -c STRING`, `bash -lc STRING`, `su - user -c STRING`.
    fn shell(&self, i: usize, name: &str) -> Launch {
        let mut j = i + 1;
        while let Some(w) = self.word(j) {
            if w.starts_with('-') && !w.starts_with("--") && w.ends_with('c') {
                return if j + 1 < self.words.len() { Launch::Shell { string: j + 1 } } else { Launch::Other };
            }
            if !w.starts_with('-') && name != "su" {
                break;
            }
            j += 1;
        }
        Launch::Other
    }

    /// Word `j` is the script an interpreter runs (`node SCRIPT`): the
    /// script decides what starts.
    fn script(&mut self, i: usize, j: usize, depth: usize) -> Launch {
        let Some(script) = self.word(j) else {
            return Launch::Other;
        };
        if let Some(tool) = child_script_tool(script) {
            return Launch::Tool { tool, program: j, args: j + 1 };
        }
        if j <= i || depth >= MAX_DEPTH {
            return Launch::Other;
        }
        self.named(j, script_program(script), depth + 1)
    }

    fn python(&mut self, i: usize, depth: usize) -> Launch {
        let mut j = i + 1;
        while let Some(w) = self.word(j) {
            match w {
                // `python -m http.server`: the module is the program.
                "-m" => return self.then(i, j + 1, depth),
                "-c" | "-" => return Launch::Other,
                "-W" | "-X" => j += 2,
                _ if w.starts_with('-') => j += 1,
                _ => break,
            }
        }
        self.script(i, j, depth)
    }

    fn deno(&mut self, i: usize, depth: usize) -> Launch {
        let words = self.words;
        match self.word(i + 1) {
            Some("task") => match first_non_option(words, i + 2, &["--cwd", "--config", "-c"]) {
                Some(s) => Launch::Script(ScriptCall {
                    manager: Manager::Deno,
                    program: i,
                    script: s,
                    name: words[s].to_string(),
                    extra: s + 1,
                    dir: option_value_index(words, i + 2, s, &["--cwd"]),
                }),
                None => Launch::Other,
            },
            // `deno run -A npm:vite@5`, `deno run main.ts`
            Some("run") => {
                match first_non_option(words, i + 2, &["--config", "-c", "--import-map", "--location", "--env-file"]) {
                    Some(s) => {
                        let spec = words[s].strip_prefix("npm:").unwrap_or(words[s]);
                        if depth >= MAX_DEPTH {
                            return Launch::Other;
                        }
                        self.named(s, strip_version(script_program(spec)), depth + 1)
                    }
                    None => Launch::Other,
                }
            }
            _ => tool_launch("deno", words, i),
        }
    }

    fn package_manager(&mut self, i: usize, name: &str, depth: usize) -> Launch {
        let words = self.words;
        let manager = match name {
            "npm" => Manager::Npm,
            "pnpm" => Manager::Pnpm,
            "yarn" => Manager::Yarn,
            _ => Manager::Bun,
        };
        // Global options before the command; some name the project directory.
        let value_opts: &[&str] = &[
            "--prefix",
            "-C",
            "--dir",
            "--cwd",
            "--filter",
            "-F",
            "-w",
            "--workspace",
            "--loglevel",
            "--registry",
            "--userconfig",
            "--cache",
        ];
        let Some(cmd) = first_non_option(words, i + 1, value_opts) else {
            return Launch::Other;
        };
        let dir = option_value_index(words, i + 1, cmd, &["--prefix", "-C", "--dir", "--cwd"]);
        let script = |script: usize, name: &str| {
            Launch::Script(ScriptCall { manager, program: i, script, name: name.to_string(), extra: script + 1, dir })
        };
        match (manager, words[cmd]) {
            (_, "run" | "run-script" | "rum" | "urn") => {
                match first_non_option(words, cmd + 1, &["-w", "--workspace", "--filter", "-F"]) {
                    Some(s) => script(s, words[s]),
                    None => Launch::Other,
                }
            }
            (Manager::Npm, "start") => script(cmd, "start"),
            (Manager::Npm, "test" | "t" | "tst") => script(cmd, "test"),
            (Manager::Npm, "exec" | "x") | (Manager::Bun, "x") | (Manager::Pnpm | Manager::Yarn, "exec" | "dlx") => {
                let j = skip_npx_options(words, cmd + 1);
                self.then(i, j, depth)
            }
            (Manager::Npm, _) => Launch::Other,
            (Manager::Pnpm, c) if PNPM_BUILTINS.contains(&c) => Launch::Other,
            (Manager::Yarn, c) if YARN_BUILTINS.contains(&c) => Launch::Other,
            (Manager::Bun, c) if BUN_BUILTINS.contains(&c) => Launch::Other,
            // `pnpm dev`, `yarn dev`, `bun dev`: a script if package.json has
            // one, else a binary of node_modules/.bin.
            (_, c) => script(cmd, c),
        }
    }
}

/// The tool named by word `i` with its arguments after it.
fn tool_launch(name: &str, words: &[&str], i: usize) -> Launch {
    match lookup(name, words, i + 1) {
        Some(tool) => Launch::Tool { tool, program: i, args: i + 1 },
        None => Launch::Program { at: i },
    }
}

const PNPM_BUILTINS: &[&str] = &[
    "add",
    "install",
    "i",
    "update",
    "up",
    "remove",
    "rm",
    "uninstall",
    "un",
    "link",
    "ln",
    "unlink",
    "import",
    "rebuild",
    "rb",
    "prune",
    "fetch",
    "patch",
    "patch-commit",
    "audit",
    "list",
    "ls",
    "outdated",
    "why",
    "publish",
    "pack",
    "store",
    "init",
    "create",
    "env",
    "setup",
    "config",
    "root",
    "bin",
    "licenses",
    "deploy",
    "install-test",
    "it",
    "dedupe",
    "self-update",
    "server",
    "recursive",
];

/// `bun test` is Bun's own test runner, not a script.
const BUN_BUILTINS: &[&str] = &[
    "test", "build", "install", "i", "add", "a", "remove", "rm", "update", "upgrade", "link", "unlink", "pm", "init",
    "create", "c", "outdated", "publish", "patch", "repl", "audit", "info",
];

const YARN_BUILTINS: &[&str] = &[
    "add",
    "install",
    "remove",
    "upgrade",
    "up",
    "init",
    "info",
    "cache",
    "config",
    "global",
    "link",
    "unlink",
    "pack",
    "publish",
    "why",
    "bin",
    "create",
    "npm",
    "plugin",
    "version",
    "versions",
    "workspaces",
    "set",
    "constraints",
    "audit",
    "outdated",
    "list",
    "login",
    "logout",
    "licenses",
    "import",
    "check",
    "autoclean",
    "owner",
    "team",
    "tag",
    "upgrade-interactive",
    "dedupe",
    "explain",
    "node",
    "patch",
    "patch-commit",
    "rebuild",
    "search",
    "stage",
    "unplug",
];

/// `npx [-y] [--package X] [-p X] [-c CMD] tool args`: the index of the tool word.
fn skip_npx_options(words: &[&str], from: usize) -> usize {
    let mut j = from;
    while let Some(w) = words.get(j) {
        match *w {
            "--" => return j + 1,
            "-p" | "--package" | "--registry" | "--cache" | "--prefix" | "-C" | "--node-options" | "--shell"
            | "--filter" | "-F" | "-w" | "--workspace" => j += 2,
            _ if w.starts_with('-') => j += 1,
            _ => return j,
        }
    }
    j
}

/// `opt value` pairs and flags up to the first plain word or `--` (consumed).
fn skip_options(words: &[&str], from: usize, value_opts: &[&str]) -> usize {
    let mut j = from;
    while let Some(w) = words.get(j) {
        if *w == "--" {
            return j + 1;
        }
        if is_assignment(w) {
            // `env A=1 B=2 cmd`: leave assignments for resolve_from to record.
            return j;
        }
        if !w.starts_with('-') || *w == "-" {
            return j;
        }
        j += if value_opts.contains(w) { 2 } else { 1 };
    }
    j
}

/// Interpreter options up to the script word; `code_opts` (`node -e`)
/// mean there is no script, answered as an index past the end.
fn skip_interpreter_options(words: &[&str], from: usize, value_opts: &[&str], code_opts: &[&str]) -> usize {
    let mut j = from;
    while let Some(w) = words.get(j) {
        if code_opts.contains(w) {
            return words.len();
        }
        if *w == "--" {
            return j + 1;
        }
        if !w.starts_with('-') {
            return j;
        }
        j += if value_opts.contains(w) { 2 } else { 1 };
    }
    j
}

fn first_non_option(words: &[&str], from: usize, value_opts: &[&str]) -> Option<usize> {
    let mut j = from;
    while let Some(w) = words.get(j) {
        if *w == "--" {
            return (j + 1 < words.len()).then_some(j + 1);
        }
        if !w.starts_with('-') {
            return Some(j);
        }
        j += if value_opts.contains(w) { 2 } else { 1 };
    }
    None
}

/// Index of the value of one of `opts` between `from` and `to` (`--prefix
/// dir`), or of the word holding it attached (`--prefix=dir`).
fn option_value_index(words: &[&str], from: usize, to: usize, opts: &[&str]) -> Option<usize> {
    let mut found = None;
    let mut j = from;
    while j < to {
        let w = words[j];
        if opts.contains(&w) && j + 1 < to {
            found = Some(j + 1);
            j += 2;
            continue;
        }
        if let Some((name, _)) = w.split_once('=')
            && opts.contains(&name)
        {
            found = Some(j);
        }
        j += 1;
    }
    found
}

pub(crate) fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// The basename of a program word. A process that set its own title
/// (`next-server (v14.2.3)`, `puma 6.4.0 (tcp://0.0.0.0:3000) [app]`,
/// `redis-server *:6379`, `postgres: checkpointer`) has one argv word; its
/// first token is the name.
fn program_name(word: &str, only_word: bool) -> &str {
    let word = if only_word && word.contains(' ') { word.split(' ').next().unwrap_or(word) } else { word };
    let base = word.rsplit('/').next().unwrap_or(word);
    base.strip_suffix(':').unwrap_or(base)
}

/// `node_modules/.bin/vite` → `vite`; `node_modules/vite/bin/vite.js` →
/// `vite`; `node_modules/@storybook/cli/bin/index.js` → `@storybook/cli`;
/// `/usr/local/bin/uvicorn` → `uvicorn`.
fn script_program(path: &str) -> &str {
    if let Some(pos) = path.rfind("node_modules/") {
        let rest = &path[pos + "node_modules/".len()..];
        if let Some(bin) = rest.strip_prefix(".bin/") {
            return bin;
        }
        let mut parts = rest.splitn(3, '/');
        let first = parts.next().unwrap_or(rest);
        if first.starts_with('@') {
            let second_len = parts.next().map_or(0, str::len);
            return &rest[..(first.len() + 1 + second_len).min(rest.len())];
        }
        return first;
    }
    path.rsplit('/').next().unwrap_or(path)
}

/// A node script that a tool runs in a child process, which is the one
/// listening (`react-scripts/scripts/start.js`).
fn child_script_tool(path: &str) -> Option<&'static Tool> {
    TOOLS.iter().find(|t| t.child_scripts.iter().any(|s| path.ends_with(s)))
}

/// `vite@5.0.0` → `vite`; `@storybook/cli@latest` → `@storybook/cli`.
pub(crate) fn strip_version(spec: &str) -> &str {
    match spec.char_indices().skip(1).find(|&(_, c)| c == '@') {
        Some((at, _)) => &spec[..at],
        None => spec,
    }
}

fn is_node(name: &str) -> bool {
    matches!(name, "node" | "nodejs" | "tsx" | "ts-node" | "ts-node-dev") || is_versioned(name, "node")
}

fn is_python(name: &str) -> bool {
    is_versioned(name, "python") || is_versioned(name, "pypy")
}

/// `python3.12` is `python`, `php8.2` is `php`.
fn is_versioned(name: &str, base: &str) -> bool {
    name.strip_prefix(base).is_some_and(|r| r.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// The tool a program name plus its arguments (from `args`) start.
fn lookup(program: &str, words: &[&str], args: usize) -> Option<&'static Tool> {
    let program = strip_version(program);
    let rest = &words[args.min(words.len())..];
    // `vite --help` prints and exits.
    if rest.iter().any(|a| *a == "--help" || *a == "--version") {
        return None;
    }
    TOOLS.iter().find(|tool| {
        tool.programs.contains(&program)
            && subcommand_matches(tool, rest)
            && (tool.requires.is_empty() || rest.iter().any(|a| tool.requires.contains(&option_name(a))))
    })
}

/// `--port=3000` → `--port`.
fn option_name(arg: &str) -> &str {
    if arg.starts_with('-') { arg.split_once('=').map_or(arg, |(n, _)| n) } else { arg }
}

fn subcommand_matches(tool: &Tool, args: &[&str]) -> bool {
    let first = first_positional(tool, args).map(|i| args[i]);
    match tool.subcommand {
        Subcommand::Any => true,
        Subcommand::OneOf(subs) => first.is_some_and(|f| subs.contains(&f)),
        Subcommand::NoneOf(subs) => first.is_none_or(|f| !subs.contains(&f)),
        Subcommand::Goal(goals) => args.iter().any(|a| goals.contains(a)),
    }
}

/// The index in `args` of the first positional argument, skipping options
/// and the values of the tool's value-taking options.
pub(crate) fn first_positional<S: AsRef<str>>(tool: &Tool, args: &[S]) -> Option<usize> {
    let mut j = 0;
    while let Some(arg) = args.get(j) {
        let a = arg.as_ref();
        if a == "--" {
            return (j + 1 < args.len()).then_some(j + 1);
        }
        if a.starts_with('-') && a.len() > 1 {
            j += if takes_value(tool, a) { 2 } else { 1 };
            continue;
        }
        return Some(j);
    }
    None
}

/// Whether `arg` is an option of `tool` whose value is the next word.
pub(crate) fn takes_value(tool: &Tool, arg: &str) -> bool {
    if arg.contains('=') {
        return false;
    }
    let port_names: &[&str] = match tool.port {
        PortSyntax::Flag { names, joined: false } | PortSyntax::HostPortFlag { names, .. } => names,
        _ => &[],
    };
    port_names.contains(&arg) || tool.value_flags.contains(&arg)
}

/// The tool that `argv` starts, looking through wrappers and interpreters.
pub fn find_tool<S: AsRef<str>>(argv: &[S]) -> Option<&'static Tool> {
    match resolve(argv).launch {
        Launch::Tool { tool, .. } => Some(tool),
        _ => None,
    }
}

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
        Launch::Shell { string } => crate::shellcmd::infer_from_script(argv[string].as_ref()),
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
    fn every_tool_has_a_built_in_type_and_a_unique_name() {
        let builtin = styxy_core::config::Config::builtin();
        for (i, t) in TOOLS.iter().enumerate() {
            assert!(builtin.service_types.contains_key(t.service_type), "{} has type {}", t.name, t.service_type);
            assert!(!t.programs.is_empty(), "{} has no program", t.name);
            assert!(TOOLS[..i].iter().all(|o| o.name != t.name), "duplicate {}", t.name);
        }
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
    fn wrappers_are_looked_through() {
        assert_eq!(tool(&["env", "PORT=3001", "npx", "--yes", "next", "dev"]), Some("next"));
        assert_eq!(tool(&["nohup", "timeout", "-s", "KILL", "60", "uvicorn", "app:app"]), Some("uvicorn"));
        assert_eq!(
            tool(&["sudo", "-u", "postgres", "/usr/lib/postgresql/16/bin/postgres", "-D", "/data"]),
            Some("postgres")
        );
        assert_eq!(tool(&["pnpm", "dlx", "http-server@14", "-p", "8081"]), Some("http-server"));
        assert_eq!(tool(&["bunx", "vite"]), Some("vite"));
        assert_eq!(tool(&["yarn", "dlx", "serve", "dist"]), Some("serve"));
        assert_eq!(tool(&["poetry", "run", "uvicorn", "app:app"]), Some("uvicorn"));
        assert_eq!(tool(&["uv", "run", "--with", "fastapi", "fastapi", "dev"]), Some("fastapi"));
        assert_eq!(tool(&["iex", "-S", "mix", "phx.server"]), Some("phoenix"));
        assert_eq!(tool(&["./mvnw", "-q", "clean", "spring-boot:run"]), Some("spring-boot"));
        assert_eq!(tool(&["deno", "run", "-A", "npm:vite@5"]), Some("vite"));
        assert_eq!(tool(&["docker", "compose", "up", "-d"]), Some("docker-compose"));
        assert_eq!(tool(&["docker", "compose", "ps"]), None);
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
