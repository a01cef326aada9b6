//! The coordinator under load: the real `lacquer-coordinator` binary with
//! its redb store on disk, 1,000 albums (the example album: 3 tracks, 13
//! stems, 11 tasks each) submitted over gRPC, then many simulated workers
//! on loopback leasing and completing tasks as fast as they can. The
//! first time a simulated worker meets a task (stage and track) it renders
//! it for real, once; every later album's same task is completed with that
//! result (the coordinator checks each result against storage, so it must
//! be real). Prints submissions per second, the coordinator's resident
//! memory with 1,000 albums queued, tasks scheduled per second (lease +
//! checked complete, each durable), and memory once they have all finished
//! and after a restart on the same state.
//!
//! `cargo bench -p lacquer --bench scheduling [-- ALBUMS WORKERS SECONDS]`

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lacquer_proto::v1 as pb;
use pb::albums_client::AlbumsClient;
use pb::workers_client::WorkersClient;
use tonic::transport::Channel;

/// Resident and peak resident memory of a process (MiB), from /proc.
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Each task's real result, by stage and track.
type Results = std::collections::HashMap<(i32, Option<u32>), String>;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::main]
async fn main() {
    let numbers: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let albums = numbers.first().copied().unwrap_or(1_000);
    let workers = numbers.get(1).copied().unwrap_or(32);
    let seconds = numbers.get(2).copied().unwrap_or(300);

    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut coordinator = Command::new(env!("CARGO_BIN_EXE_lacquer-coordinator"))
        .args(["--listen", &listen, "--state-dir", state.path().to_str().unwrap(), "--lease-ms", "60000"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = coordinator.id();
    let url = format!("http://{listen}");
    let channel = loop {
        match Channel::from_shared(url.clone()).unwrap().connect().await {
            Ok(channel) => break channel,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let idle = memory_mib(pid).0;

    // 1,000 albums, four submitting at once; inputs probed on local disk.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/album-small");
    let manifest = std::fs::read_to_string(fixture.join("album.yaml")).unwrap();
    let request = pb::SubmitRequest {
        manifest_yaml: manifest,
        source: fixture.canonicalize().unwrap().display().to_string(),
        output: state.path().join("out").display().to_string(),
    };
    let started = Instant::now();
    let submitted = Arc::new(AtomicU64::new(0));
    let mut submitters = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (mut client, request, submitted) = (AlbumsClient::new(channel.clone()), request.clone(), submitted.clone());
        submitters.spawn(async move {
            while submitted.fetch_add(1, Ordering::Relaxed) < albums {
                client.submit(request.clone()).await.unwrap();
            }
        });
    }
    while submitters.join_next().await.is_some() {}
    let submit_s = started.elapsed().as_secs_f64();
    let (queued, _) = memory_mib(pid);

    // Simulated workers: lease, complete at once (with the task's real
    // result, rendered the first time it is met), repeat.
    let scratch = tempfile::tempdir().unwrap();
    let runner = lacquer_worker::run::Runner::new(
        Arc::new(lacquer_runtime::stores::Stores::new(Default::default())),
        scratch.path().to_path_buf(),
    );
    let known: Arc<tokio::sync::Mutex<Results>> = Arc::default();
    let done = Arc::new(AtomicU64::new(0));
    let stop_at = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut fleet = tokio::task::JoinSet::new();
    for w in 0..workers {
        let (mut client, done) = (WorkersClient::new(channel.clone()), done.clone());
        let (runner, known) = (runner.clone(), known.clone());
        fleet.spawn(async move {
            let worker_id = format!("sim-{w}");
            while Instant::now() < stop_at {
                let lease = client.lease(pb::LeaseRequest { worker_id: worker_id.clone() }).await.unwrap();
                let Some(task) = lease.into_inner().task else {
                    // Nothing ready: the first album's earlier tasks are still rendering.
                    if done.load(Ordering::Relaxed) >= albums * 10 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let result = {
                    let mut known = known.lock().await;
                    match known.get(&(task.stage, task.track)) {
                        Some(result) => result.clone(),
                        None => {
                            let result = lacquer_worker::testing::run_leased(&runner, &task).await.unwrap();
                            known.insert((task.stage, task.track), result.clone());
                            result
                        }
                    }
                };
                let task = pb::TaskRef { job_id: task.job_id, stage: task.stage, track: task.track, lease: task.lease };
                let request = pb::CompleteRequest { task: Some(task), result_json: result, ..Default::default() };
                if client.complete(request).await.unwrap().into_inner().accepted {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while fleet.join_next().await.is_some() {}
    let run_s = started.elapsed().as_secs_f64();
    let tasks = done.load(Ordering::Relaxed);
    // The coordinator hands what finished jobs held back to the system at
    // once, and again 12 s later, when tokio's idle blocking threads have
    // ended (their heap arenas stay).
    tokio::time::sleep(Duration::from_millis(14_000)).await;
    let (after, peak) = memory_mib(pid);
    let _ = coordinator.kill();
    let _ = coordinator.wait();

    // The same state, loaded by a restarted coordinator: finished jobs are
    // summaries only, so memory is that of an idle coordinator.
    let mut restarted = Command::new(env!("CARGO_BIN_EXE_lacquer-coordinator"))
        .args(["--listen", &listen, "--state-dir", state.path().to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let channel = loop {
        match Channel::from_shared(url.clone()).unwrap().connect().await {
            Ok(channel) => break channel,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let listed = AlbumsClient::new(channel).list(pb::ListRequest {}).await.unwrap().into_inner().jobs;
    let finished = listed.iter().filter(|j| j.state() == pb::JobState::Succeeded).count();
    let (reloaded, _) = memory_mib(restarted.id());
    let _ = restarted.kill();
    let _ = restarted.wait();

    println!("coordinator scheduling benchmark (redb on disk, {workers} simulated workers on loopback)");
    println!(
        "  submit:    {albums} albums in {submit_s:.1} s = {:.0} albums/s (manifest checked, 13 inputs probed each)",
        albums as f64 / submit_s
    );
    println!(
        "  memory:    {idle:.1} MiB idle, {queued:.1} MiB with {albums} albums queued ({:.1} KiB per album)",
        (queued - idle) * 1024.0 / albums as f64
    );
    println!("  schedule:  {tasks} tasks leased and completed in {run_s:.1} s = {:.0} tasks/s", tasks as f64 / run_s);
    println!(
        "  memory after: {after:.1} MiB resident once all {albums} finished ({:.0}% of idle), {peak:.1} MiB peak",
        after / idle * 100.0
    );
    println!(
        "  restarted on that state: {reloaded:.1} MiB resident with {finished} finished albums ({:.0}% of idle)",
        reloaded / idle * 100.0
    );
}
