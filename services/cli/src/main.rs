//! `styxy`: the command users type. Argument parsing, transport and output;
//! the allocator decides.

mod cli;
mod daemon;
mod dashboard;
mod discover;
mod doctor;
mod elf;
mod hook;
mod output;
mod ports;
mod run;
mod scopes;
mod settings;
mod supervise;
mod table;

use clap::{CommandFactory, Parser};
use cli::{Cli, Command, DaemonCommand, HookCommand, HooksCommand};
use discover::Discovery;
use hook::install;
use hook::protocol::EventKind;
use output::Failure;
use std::process::ExitCode;
use styxy_proto::client::Client;

/// What every command needs: the output mode and how to reach the allocator.
pub struct Ctx {
    pub json: bool,
    pub discovery: Discovery,
}

impl Ctx {
    /// The allocator, started in user mode when none answers.
    pub fn client(&self) -> Result<Client, Failure> {
        Ok(self.discovery.connect()?)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ctx = Ctx {
        json: cli.json,
        discovery: Discovery { socket: cli.socket, autostart: !cli.no_autostart, timeout: cli.timeout },
    };
    let result = match &cli.command {
        Command::Allocate(args) => ports::allocate(&ctx, args),
        Command::Release { lock_id } => ports::release(&ctx, lock_id),
        Command::Check { port } => ports::check(&ctx, *port),
        Command::List { verbose, all } => ports::list(&ctx, *verbose, *all),
        Command::Scan { start, end } => ports::scan(&ctx, *start, *end),
        Command::Instances => ports::instances(&ctx),
        Command::Cleanup { force } => ports::cleanup(&ctx, *force),
        Command::Config(command) => settings::config(&ctx, command),
        Command::Doctor => Ok(doctor::doctor(&ctx)),
        Command::Daemon(DaemonCommand::Status) => daemon::status(&ctx),
        Command::Daemon(DaemonCommand::Stop) => daemon::stop(&ctx),
        Command::Token { write_legacy } => daemon::token(&ctx, *write_legacy),
        Command::Ui { port, no_open } => dashboard::serve::ui(&ctx, *port, !*no_open),
        Command::Top => dashboard::top::top(&dashboard::Watch::new(ctx.discovery.clone())),
        Command::Run(args) => Ok(run::run(&ctx, args)),
        Command::ShellInit { shell } => run::shell_init(*shell),
        Command::Env { scope } => scopes::env(&ctx, scope.as_deref()),
        Command::Hook(event) => {
            let (kind, rewrite) = match event {
                HookCommand::SessionStart => (EventKind::SessionStart, false),
                HookCommand::PreToolUse { rewrite } => (EventKind::PreToolUse, *rewrite),
                HookCommand::PostToolUse => (EventKind::PostToolUse, false),
                HookCommand::PostToolUseFailure => (EventKind::PostToolUseFailure, false),
                HookCommand::SessionEnd => (EventKind::SessionEnd, false),
            };
            Ok(hook::hook(&ctx, kind, rewrite))
        }
        Command::Hooks(HooksCommand::Install { scope, rewrite }) => {
            install::install_command(&ctx, scope.scope(), *rewrite)
        }
        Command::Hooks(HooksCommand::Uninstall { scope }) => install::uninstall_command(&ctx, scope.scope()),
        Command::Hooks(HooksCommand::Status { scope }) => install::status_command(&ctx, &scope.scopes()),
        Command::Completions { shell } => Ok(completions(*shell)),
        Command::Man => man(),
    };
    ExitCode::from(match result {
        Ok(code) => code,
        Err(failure) => failure.report(ctx.json),
    })
}

fn completions(shell: cli::Shell) -> u8 {
    let shell = match shell {
        cli::Shell::Bash => clap_complete::Shell::Bash,
        cli::Shell::Zsh => clap_complete::Shell::Zsh,
        cli::Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "styxy", &mut script);
    output::print(&String::from_utf8_lossy(&script));
    cli::EXIT_OK
}

/// clap_mangen's sections, with an EXIT STATUS section of our own in place
/// of its untitled rendering of `--help`'s epilogue.
fn man() -> Result<u8, Failure> {
    use clap_mangen::roff::{Roff, bold, roman};
    let man = clap_mangen::Man::new(Cli::command());
    let mut exit_status = Roff::new();
    exit_status.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in cli::EXIT_STATUSES {
        exit_status.control("TP", []).text([bold(code.to_string())]).text([roman(meaning)]);
    }
    exit_status.control("PP", []).text([roman(cli::RUN_EXIT_STATUS)]);
    exit_status.control("PP", []).text([roman(cli::JSON_ERRORS)]);

    let mut page = Vec::new();
    let rendered = (|| {
        man.render_title(&mut page)?;
        man.render_name_section(&mut page)?;
        man.render_synopsis_section(&mut page)?;
        man.render_description_section(&mut page)?;
        man.render_options_section(&mut page)?;
        man.render_subcommands_section(&mut page)?;
        exit_status.to_writer(&mut page)?;
        man.render_version_section(&mut page)
    })();
    rendered.map_err(|e| Failure::local("internal", format!("cannot render the man page: {e}")))?;
    output::print(&String::from_utf8_lossy(&page));
    Ok(cli::EXIT_OK)
}
