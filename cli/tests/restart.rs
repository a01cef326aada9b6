//! The coordinator binary killed with SIGKILL in the middle of a job and
//! started again on the same `--state-dir`: the job continues, results
//! given before the kill are kept, and a result from the lease that was
//! running at the kill is refused once the task has been handed on.

use std::path::Path;
use std::time::Duration;

use lacquer_proto::v1 as pb;
use lacquer_worker::run::Runner;
use lacquer_worker::testing::{AlbumStore, run_leased};
use pb::albums_client::AlbumsClient;
use pb::workers_client::WorkersClient;
use tonic::transport::Channel;

mod support;

/// Starts the binary on a free loopback port and connects to it.
async fn start(state_dir: &Path, store: &AlbumStore) -> (support::Process, Channel) {
    let (process, url) = support::coordinator(state_dir, &["--lease-ms", "3000"], &store.env());
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    (process, channel)
}

fn task_ref(a: &pb::Assignment) -> pb::TaskRef {
    pb::TaskRef { job_id: a.job_id.clone(), stage: a.stage, track: a.track, lease: a.lease }
}

async fn lease(channel: &Channel) -> Option<pb::Assignment> {
    let mut worker = WorkersClient::new(channel.clone());
    worker.lease(pb::LeaseRequest { worker_id: "w".into() }).await.unwrap().into_inner().task
}

/// Runs the task for real (the coordinator checks results against
/// storage) and completes it; whether the result was accepted.
async fn complete(channel: &Channel, runner: &Runner, task: &pb::Assignment) -> bool {
    let mut worker = WorkersClient::new(channel.clone());
    let result = run_leased(runner, task).await.unwrap();
    let request = pb::CompleteRequest { task: Some(task_ref(task)), result_json: result, ..Default::default() };
    worker.complete(request).await.unwrap().into_inner().accepted
}

#[tokio::test]
async fn a_job_survives_sigkill_of_the_coordinator() {
    let state = tempfile::tempdir().unwrap();
    let store = AlbumStore::start(&["label-a"]).unwrap();
    store.put_fixture("s3://label-a/corpus/").unwrap();
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/album-small/album.yaml"))
            .unwrap();
    let (first, first_channel) = start(state.path(), &store).await;
    let mut albums = AlbumsClient::new(first_channel.clone());
    let request =
        pb::SubmitRequest { manifest_yaml: manifest, source: "s3://label-a/corpus/".into(), output: String::new() };
    let job = albums.submit(request).await.unwrap().into_inner().job.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let runner = Runner::new(store.stores(), scratch.path().to_path_buf());
    // The three mixes and one master are done; a second master is running.
    for _ in 0..4 {
        let task = lease(&first_channel).await.unwrap();
        assert!(complete(&first_channel, &runner, &task).await);
    }
    let running = lease(&first_channel).await.unwrap();
    drop(first); // SIGKILL

    let (_second, second_channel) = start(state.path(), &store).await;
    let mut albums = AlbumsClient::new(second_channel.clone());
    let now = albums.get(pb::GetRequest { job_id: job.id.clone() }).await.unwrap().into_inner();
    assert_eq!(now.state(), pb::JobState::Running);
    assert_eq!(now.tasks_done, 4, "every answered completion survived the kill");
    // The running task's lease runs out, then the task is handed on.
    let mut handed_on = None;
    for _ in 0..400 {
        match lease(&second_channel).await {
            Some(task) if task.stage == running.stage && task.track == running.track => {
                handed_on = Some(task);
                break;
            }
            Some(other) => assert!(complete(&second_channel, &runner, &other).await),
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let handed_on = handed_on.expect("the interrupted task is leased again");
    assert!(handed_on.attempt >= 2);
    assert!(!complete(&second_channel, &runner, &running).await, "the old lease's result is refused");
    assert!(complete(&second_channel, &runner, &handed_on).await);
    let mut report_inputs = None;
    while let Some(task) = lease(&second_channel).await {
        if task.stage() == pb::Stage::Report {
            report_inputs = Some(serde_json::from_str::<serde_json::Value>(&task.inputs_json).unwrap());
        }
        assert!(complete(&second_channel, &runner, &task).await);
    }
    // The report is handed every task's result, once each, those given
    // before the kill included.
    let inputs = report_inputs.expect("the report task ran");
    let ids = ["01-chorale-66", "02-maple-leaf", "03-tears-ballad"];
    for stage in ["mix", "master", "finalize"] {
        let results = inputs[stage].as_array().unwrap();
        assert_eq!(results.len(), 3, "{inputs}");
        for (id, result) in ids.iter().zip(results) {
            let path = match stage {
                "mix" => &result["file"]["Rendered"]["path"],
                "master" => &result["file"]["path"],
                _ => &result["files"][0]["path"],
            };
            assert!(path.as_str().is_some_and(|p| p.contains(id)), "{stage} of {id}: {result}");
        }
    }
    let done = albums.get(pb::GetRequest { job_id: job.id.clone() }).await.unwrap().into_inner();
    assert_eq!(done.state(), pb::JobState::Succeeded);
    assert_eq!(done.tasks_done, 11);
    let report = albums.report(pb::ReportRequest { job_id: job.id }).await.unwrap().into_inner();
    assert!(report.report_json.contains("\"title\":\"Corpus Sessions\""), "{}", report.report_json);
}
