//! The `redirector` binary: the daemon and its CLI (see `redirector --help`).

use std::process::ExitCode;

fn main() -> ExitCode {
    match redirector::cli::main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("redirector: {e:#}");
            ExitCode::from(1)
        }
    }
}
