//! The coordinator binary killed with SIGKILL in the middle of a job and
//! started again on the same `--state-dir`: the job continues, results
//! given before the kill are kept, and a result from the lease that was
//! running at the kill is refused once the task has been handed on.

use std::path::Path;
use std::time::Duration;

use lacquer_proto::v1 as pb;
use lacquer_worker::testing::AlbumStore;
use pb::albums_client::AlbumsClient;
use pb::workers_client::WorkersClient;
use tonic::transport::Channel;

mod support;

/// Starts the binary on a free loopback port and connects to it.
async fn start(state_dir: &Path, store: &AlbumStore) -> (support::Process, Channel) {
    let (process, url) = support::coordinator(state_dir, &["--lease-ms", "400"], &store.env());
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

async fn complete(channel: &Channel, task: &pb::Assignment) -> bool {
    let mut worker = WorkersClient::new(channel.clone());
    let result = format!("{{\"stage\": {}, \"track\": {}}}", task.stage, task.track.unwrap_or(99));
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
    // The three mixes and one master are done; a second master is running.
    for _ in 0..4 {
        let task = lease(&first_channel).await.unwrap();
        assert!(complete(&first_channel, &task).await);
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
    for _ in 0..100 {
        match lease(&second_channel).await {
            Some(task) if task.stage == running.stage && task.track == running.track => {
                handed_on = Some(task);
                break;
            }
            Some(other) => assert!(complete(&second_channel, &other).await),
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let handed_on = handed_on.expect("the interrupted task is leased again");
    assert!(handed_on.attempt >= 2);
    assert!(!complete(&second_channel, &running).await, "the old lease's result is refused");
    assert!(complete(&second_channel, &handed_on).await);
    let mut report_inputs = None;
    while let Some(task) = lease(&second_channel).await {
        if task.stage() == pb::Stage::Report {
            report_inputs = Some(serde_json::from_str::<serde_json::Value>(&task.inputs_json).unwrap());
        }
        assert!(complete(&second_channel, &task).await);
    }
    // The report is handed every task's result, once each, those given
    // before the kill included.
    let inputs = report_inputs.expect("the report task ran");
    for (stage, number) in [("mix", 1), ("master", 2), ("finalize", 3)] {
        let results = inputs[stage].as_array().unwrap();
        assert_eq!(results.len(), 3, "{inputs}");
        for (track, result) in results.iter().enumerate() {
            assert_eq!(result["stage"], number, "{inputs}");
            assert_eq!(result["track"], track, "{inputs}");
        }
    }
    let done = albums.get(pb::GetRequest { job_id: job.id.clone() }).await.unwrap().into_inner();
    assert_eq!(done.state(), pb::JobState::Succeeded);
    assert_eq!(done.tasks_done, 10);
    let report = albums.report(pb::ReportRequest { job_id: job.id }).await.unwrap().into_inner();
    assert!(report.report_json.contains("\"stage\": 4"), "{}", report.report_json);
}
