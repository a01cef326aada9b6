//! The example Python client (`examples/python/lacquer_client.py`, grpcio
//! with stubs generated from our protos) submits the example album to a
//! real coordinator on loopback, follows it while the test completes its
//! tasks as a worker, and fetches the report. `scripts/setup` makes the
//! Python environment (target/python).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use lacquer_coordinator::auth::Auth;
use lacquer_coordinator::job::RetryPolicy;
use lacquer_coordinator::server::serve;
use lacquer_coordinator::service::Coordinator;
use lacquer_proto::v1 as pb;
use lacquer_worker::run::Runner;
use lacquer_worker::testing::run_leased;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    std::env::var_os("LACQUER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository().join("target/python/bin/python"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_submits_watches_and_fetches_the_report() {
    let python = python();
    assert!(python.exists(), "{} is missing: run scripts/setup", python.display());
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(
        &tokens,
        "tenants:\n  label-a: { token: aaaaaaaaaaaaaaaaaaaa, allowed: [\"s3://label-a/\"] }\n\
         workers: { token: wwwwwwwwwwwwwwwwwwww }\n",
    )
    .unwrap();
    let store = lacquer_worker::testing::AlbumStore::start(&["label-a"]).unwrap();
    store.put_fixture("s3://label-a/corpus/").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let coordinator = Coordinator::new(RetryPolicy::default(), Auth::from_file(&tokens).unwrap(), store.stores());
    let serve_until_stopped = |listener, coordinator: Coordinator| {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, coordinator, async {
            let _ = stopped.await;
        }));
        (stop, server)
    };
    let (mut stop, mut server) = serve_until_stopped(listener, coordinator.clone());

    let report = dir.path().join("report.json");
    let client = tokio::process::Command::new(&python)
        .arg(repository().join("examples/python/lacquer_client.py"))
        .arg(repository().join("examples/album-small/album.yaml"))
        .args(["--coordinator", &address.to_string(), "--source", "s3://label-a/corpus/", "--report"])
        .arg(&report)
        .env("LACQUER_TOKEN", "aaaaaaaaaaaaaaaaaaaa")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // A worker runs every task as the client follows the job.
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}")).unwrap().connect().await.unwrap();
    let header: tonic::metadata::MetadataValue<_> = "Bearer wwwwwwwwwwwwwwwwwwww".parse().unwrap();
    let mut worker = pb::workers_client::WorkersClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", header.clone());
        Ok(r)
    });
    let scratch = tempfile::tempdir().unwrap();
    let runner = Runner::new(store.stores(), scratch.path().to_path_buf());
    let mut expected_report = String::new();
    let mut done = 0;
    let mut restarted = false;
    for _ in 0..600 {
        if done == 3 && !restarted {
            // The coordinator's server stops mid-job, as on SIGTERM (watch
            // streams ended, connections closed), and comes back on the
            // same address: the client watches again and follows the job
            // to its end.
            coordinator.end_watches();
            let _ = stop.send(());
            tokio::time::timeout(std::time::Duration::from_secs(10), &mut server).await.unwrap().unwrap().unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
            let listener = tokio::net::TcpListener::bind(address).await.unwrap();
            (stop, server) = serve_until_stopped(listener, coordinator.clone());
            restarted = true;
        }
        let lease = match worker.lease(pb::LeaseRequest { worker_id: "w".into() }).await {
            Ok(lease) => lease,
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        match lease.into_inner().task {
            Some(task) => {
                let result = run_leased(&runner, &task).await.unwrap();
                if task.stage == pb::Stage::Report as i32 {
                    expected_report = result.clone();
                }
                let task_ref =
                    pb::TaskRef { job_id: task.job_id, stage: task.stage, track: task.track, lease: task.lease };
                worker
                    .complete(pb::CompleteRequest { task: Some(task_ref), result_json: result, ..Default::default() })
                    .await
                    .unwrap();
                done += 1;
                if done == 11 {
                    break;
                }
            }
            // The client has not submitted yet (it generates its stubs first).
            None => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    assert_eq!(done, 11, "the client's album was submitted and run");
    let output =
        tokio::time::timeout(std::time::Duration::from_secs(60), client.wait_with_output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("submitted job-000001 (Corpus Sessions), 11 tasks"), "{stdout}");
    assert!(stdout.contains("job-000001 succeeded 11/11"), "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("lost the coordinator"), "the client saw the restart: {stderr}");
    assert_eq!(std::fs::read_to_string(&report).unwrap(), expected_report);
}
