//! The `redirector` binary: the daemon and its CLI (see `redirector --help`).

use std::{io::Write as _, process::ExitCode};

fn main() -> ExitCode {
    match redirector::cli::main() {
        Ok(code) => code,
        Err(e) => {
            // Not eprintln!: it panics (exit 101) when stderr is full or
            // a closed pipe; the exit code must say what happened.
            let _ = writeln!(
                std::io::stderr(),
                "redirector: {}",
                redirector::cli::error_text(&e)
            );
            ExitCode::from(1)
        }
    }
}
