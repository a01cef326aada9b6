//! `lacquer-coordinator`: serves the Albums and Workers gRPC services (see
//! `lacquer_coordinator::cli`).

fn main() -> std::process::ExitCode {
    if let Err(error) = lacquer_pipelines::check_cpu() {
        eprintln!("error: {error}");
        return std::process::ExitCode::from(2);
    }
    lacquer_coordinator::cli::main()
}
