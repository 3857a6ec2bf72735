//! The `kiln` binary: parse the command line, run, map the result to an
//! exit code (0 success, 1 user error, 2 internal failure).

use std::process::ExitCode;

fn main() -> ExitCode {
    kiln::terminal::install();
    kiln::terminal::install_panic_hook();
    let settings = match kiln::cli::parse() {
        Ok(settings) => settings,
        Err(exit) => return exit,
    };
    let result = std::panic::catch_unwind(|| kiln::run(settings));
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(failure)) => {
            failure
                .reports()
                .into_iter()
                .for_each(kiln::terminal::diagnostic);
            ExitCode::from(failure.exit_code())
        }
        // The panic hook has already printed the message.
        Err(_) => ExitCode::from(kiln::cli::INTERNAL_EXIT_CODE),
    }
}
