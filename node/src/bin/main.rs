//! liandong-node: parses flags, starts tracing, runs the host until SIGTERM or Ctrl-C.

use std::path::PathBuf;

use clap::Parser;

/// mimalloc: a host's apply path allocates small values at a high rate (keys, encoded values,
/// summaries); glibc's malloc spent about a tenth of the CPU on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "liandong-node",
    about = "One Liandong host: replicas of one or more offices"
)]
struct Args {
    /// The host's TOML config, written by `liandong federation init`.
    #[arg(long)]
    config: PathBuf,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    liandong_node::host::init_tracing();
    if let Err(error) =
        liandong_node::host::run(&args.config, liandong_node::host::terminated()).await
    {
        eprintln!("liandong-node: {error:#}");
        std::process::exit(1);
    }
}
