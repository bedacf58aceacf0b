//! `profile`: parse the command line, run the pipeline, print any error once,
//! on one line.

use std::io::Write;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

use rs_profile::cli::{Action, Cli};
use rs_profile::sampler::program;
use rs_profile::{offline, pipeline};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            err.exit()
        }
        Err(err) => {
            // clap's message, without its usage block: one line.
            let text = err.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = rs_profile::cli::shorten_quoted(first.trim_start_matches("error: "));
            eprintln!("profile: {first}");
            return ExitCode::from(2);
        }
    };
    if std::env::var_os("RS_PROFILE_DEBUG").is_none() {
        // libbpf's own multi-line diagnostics: our errors say what failed.
        libbpf_rs::set_print(None);
    }
    let result = cli.into_action().and_then(|action| match action {
        Action::PrintBpf(cfg) => {
            // As profile.py: the header (unless -f), then the program.
            let mut out = std::io::stdout().lock();
            if let Some(h) = &cfg.header {
                writeln!(out, "{}", h.line())?;
            }
            write!(out, "{}", program::source_with_options(&cfg.sampler))?;
            out.flush()?;
            Ok(())
        }
        Action::Run(cfg) => {
            rs_profile::memory::one_arena();
            pipeline::run(*cfg)
        }
        Action::Render(args) => offline::render(args),
        Action::Serve(args) => offline::serve(args),
        Action::Report(args) => offline::report(args),
        Action::Import(args) => offline::import(args),
        Action::Export(args) => offline::export(args),
        Action::Encode(args) => rs_profile::encode::encode(args),
        // Generated into memory first: clap_complete panics on a write
        // error, and `profile completions bash | head` closes the pipe.
        Action::Completions(shell) => {
            let mut buf = Vec::new();
            Cli::completions(shell, &mut buf);
            write_stdout(&buf)
        }
        Action::Man(sub) => {
            let mut buf = Vec::new();
            Cli::man(sub.as_deref(), &mut buf)?;
            write_stdout(&buf)
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `profile report | head` closing the pipe early is not an error.
        Err(err) if pipeline::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("profile: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    Ok(out.flush()?)
}
