//! The coordinator and workers under faults, as real processes on
//! loopback: a state store that cannot be written (a file-size limit of 0
//! set on the running coordinator with `prlimit`, then lifted), SIGTERM
//! while a client watches, a client that follows its job across the
//! coordinator's restart, and a worker started before its coordinator on a
//! scratch folder a killed worker left behind.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lacquer_worker::testing::fixture_dir;

mod support;
use support::Process;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn lacquer(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lacquer")).args(args).args(["--coordinator", url]).output().unwrap()
}

/// Submits the example album (inputs on this machine) to `output`.
fn submit(url: &str, output: &Path) -> std::process::Output {
    let manifest = fixture_dir().join("album.yaml");
    let source = fixture_dir().canonicalize().unwrap();
    lacquer(
        url,
        &[
            "submit",
            manifest.to_str().unwrap(),
            "--source",
            source.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--json",
        ],
    )
}

/// The gRPC health of the coordinator's Albums service.
fn serving(url: &str) -> bool {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let Ok(channel) = tonic::transport::Channel::from_shared(url.to_owned()).unwrap().connect().await else {
            return false;
        };
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let request = tonic_health::pb::HealthCheckRequest { service: "lacquer.v1.Albums".into() };
        health.check(request).await.is_ok_and(|reply| {
            reply.into_inner().status() == tonic_health::pb::health_check_response::ServingStatus::Serving
        })
    })
}

fn prlimit_fsize(pid: u32, limit: &str) {
    let status = Command::new("prlimit").args(["--pid", &pid.to_string(), &format!("--fsize={limit}")]).status();
    assert!(status.is_ok_and(|s| s.success()), "prlimit (util-linux) could not set the file-size limit");
}

fn until(what: &str, seconds: u64, mut ready: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < Duration::from_secs(seconds), "no {what} within {seconds} s");
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

#[test]
fn an_unwritable_store_fails_health_and_recovers_without_a_restart() {
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let (coordinator, url) = support::coordinator(state.path(), &["--metrics-listen", &metrics], &[]);
    assert!(serving(&url));
    assert!(submit(&url, out.path()).status.success());

    // The disk refuses writes (as a full one would).
    prlimit_fsize(coordinator.child.id(), "0:unlimited");
    let refused = submit(&url, out.path());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(said.contains("unavailable") && said.contains("nothing was changed"), "{said}");
    until("NOT_SERVING", 5, || !serving(&url));
    assert_eq!(support::sample(&support::scrape(&metrics), "lacquer_store_writable"), Some(0.0));
    assert!(support::sample(&support::scrape(&metrics), "lacquer_store_errors_total").is_some_and(|n| n >= 1.0));
    assert!(coordinator.log().contains("cannot be written"), "{}", coordinator.log());

    // Writable again: the store reopens by itself within seconds.
    prlimit_fsize(coordinator.child.id(), "unlimited:unlimited");
    let took = until("SERVING again", 10, || serving(&url));
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(submit(&url, out.path()).status.success(), "{}", coordinator.log());
    let listed = lacquer(&url, &["list", "--json"]);
    let jobs: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(jobs.as_array().unwrap().len(), 2, "the refused submission left no job: {jobs}");
    assert!(coordinator.log().contains("writable again"), "{}", coordinator.log());
}

#[test]
fn sigterm_ends_watches_and_clients_and_workers_ride_out_the_restart() {
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let url = format!("http://{listen}");
    let start_coordinator = || {
        let args = ["--listen", &listen, "--state-dir", state.path().to_str().unwrap(), "--lease-ms", "2000"];
        let mut process = Process::start(env!("CARGO_BIN_EXE_lacquer-coordinator"), &args, &[]);
        process.wait_for("lacquer-coordinator listening");
        process
    };
    let coordinator = start_coordinator();
    let submitted = submit(&url, out.path());
    assert!(submitted.status.success(), "{}", String::from_utf8_lossy(&submitted.stderr));
    let job: serde_json::Value = serde_json::from_slice(&submitted.stdout).unwrap();
    let id = job["id"].as_str().unwrap().to_owned();

    // A client watches (no worker yet: the job waits).
    let watcher = Command::new(env!("CARGO_BIN_EXE_lacquer"))
        .args(["watch", &id, "--json", "--coordinator", &url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));

    // SIGTERM: the watch stream is ended and the coordinator exits at once.
    let mut coordinator = coordinator;
    coordinator.terminate();
    let took = until("the coordinator's exit", 8, || coordinator.child.try_wait().unwrap().is_some());
    let status = coordinator.child.wait().unwrap();
    assert!(status.success(), "{status}:\n{}", coordinator.log());
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(coordinator.log().contains("lacquer-coordinator stopped"), "{}", coordinator.log());

    // A worker started while no coordinator answers waits for one, and
    // clears the scratch space a killed worker left.
    let scratch = tempfile::tempdir().unwrap();
    let dead = scratch.path().join("killed-worker");
    std::fs::create_dir_all(dead.join("task-x")).unwrap();
    std::fs::write(dead.join("task-x/in-1-stem.flac"), vec![0u8; 1 << 20]).unwrap();
    std::fs::write(scratch.path().join("killed-worker.lock"), b"").unwrap();
    let mut worker = support::worker(&url, "w1", scratch.path(), &[], &[]);
    worker.wait_for("cannot reach the coordinator yet");
    assert!(!dead.exists(), "the dead worker's scratch is gone");
    assert!(worker.child.try_wait().unwrap().is_none(), "the worker waits:\n{}", worker.log());

    // The coordinator comes back on its state; the worker connects and
    // runs the job; the watching client follows it to its end.
    std::thread::sleep(Duration::from_secs(2));
    let coordinator = start_coordinator();
    worker.wait_for("lacquer-worker started");
    let watched = watcher.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&watched.stdout);
    let stderr = String::from_utf8_lossy(&watched.stderr);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(watched.status.success(), "{stdout}\n{stderr}\n{}\n{}", coordinator.log(), worker.log());
    assert_eq!(last["state"], "succeeded");
    assert!(stderr.contains("lost the coordinator"), "{stderr}");
    // While it ran, its scratch was its own folder; it is gone on exit.
    worker.terminate();
    until("the worker's exit", 30, || worker.child.try_wait().unwrap().is_some());
    assert!(!scratch.path().join("w1").exists() && !scratch.path().join("w1.lock").exists());
}
