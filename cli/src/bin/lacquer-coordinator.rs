//! `lacquer-coordinator`: serves the Albums and Workers gRPC services (see
//! `lacquer_coordinator::cli`).

fn main() -> std::process::ExitCode {
    lacquer_coordinator::cli::main()
}
