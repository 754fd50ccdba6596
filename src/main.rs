use std::process::ExitCode;

fn main() -> ExitCode {
    match capstan::cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("capstan: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
