//! `lacquer-worker`: leases album tasks from a coordinator and runs them
//! against object storage (see `lacquer_worker::cli`).

fn main() -> std::process::ExitCode {
    lacquer_worker::cli::main()
}
