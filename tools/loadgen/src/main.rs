//! The `sluice-loadgen` command (see `cli`).

fn main() -> std::process::ExitCode {
    sluice_loadgen::cli::main(std::env::args_os())
}
