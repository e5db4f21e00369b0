//! liandong: parses flags, runs the command, prints its report. Errors are one line on stderr.

use std::io::Write;

use clap::FromArgMatches;
use liandong_ops::cli::Cli;

/// mimalloc: a host's apply path allocates small values at a high rate (keys, encoded values,
/// summaries); glibc's malloc spent about a tenth of the CPU on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // The definition with each command's example in its help (liandong_ops::examples).
    let matches = liandong_ops::examples::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    let json = cli.json;
    if matches!(cli.command, liandong_ops::cli::Command::Node(_)) {
        liandong_node::host::init_tracing();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("liandong: cannot start the runtime: {error}");
            std::process::exit(1);
        }
    };
    match runtime.block_on(liandong_ops::commands::run(cli)) {
        Ok(report) => {
            let text = if json {
                report.json.to_string()
            } else {
                report.text
            };
            // A reader that stopped early (`| head`) is not an error of ours: never a panic.
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{text}").and_then(|()| stdout.flush());
            if !report.ok {
                std::process::exit(1);
            }
        }
        Err(error) => {
            let line = format!("{error:#}").replace('\n', " ");
            eprintln!("liandong: {line}");
            std::process::exit(1);
        }
    }
}
