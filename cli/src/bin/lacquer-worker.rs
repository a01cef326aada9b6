//! `lacquer-worker`: leases album tasks from a coordinator and runs them
//! against object storage (see `lacquer_worker::cli`).

fn main() -> std::process::ExitCode {
    lacquer_runtime::share_one_heap();
    if let Err(error) = lacquer_pipelines::check_cpu() {
        eprintln!("error: {error}");
        return std::process::ExitCode::from(2);
    }
    lacquer_worker::cli::main()
}
