//! The coordinator's gRPC services, served on a loopback port by the test
//! and driven by real tonic clients: a client submitting and watching, and
//! a worker leasing, heartbeating, completing and failing tasks.

use std::path::Path;
use std::time::Duration;

use lacquer_coordinator::auth::Auth;
use lacquer_coordinator::job::RetryPolicy;
use lacquer_coordinator::server::serve;
use lacquer_coordinator::service::{Coordinator, Settings};
use lacquer_coordinator::store::Store;
use lacquer_proto::v1 as pb;
use lacquer_worker::run::Runner;
use lacquer_worker::testing::{AlbumStore, run_leased};
use pb::albums_client::AlbumsClient;
use pb::workers_client::WorkersClient;
use tonic::transport::Channel;

struct Server {
    channel: Channel,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Holds the example album wherever these tests' manifests point.
    _store: AlbumStore,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start(policy: RetryPolicy) -> Server {
    start_with(policy, Auth::open()).await
}

async fn start_with(policy: RetryPolicy, auth: Auth) -> Server {
    let store = AlbumStore::start(&["label-a", "label-b", "big", "small"]).unwrap();
    for location in ["s3://label-a/albums/corpus/", "s3://label-a/corpus/", "s3://big/a/", "s3://small/a/"] {
        store.put_fixture(location).unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, Coordinator::new(policy, auth, store.stores()), async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{address}")).unwrap().connect().await.unwrap();
    Server { channel, stop: Some(stop), _store: store }
}

fn fixture_manifest() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/album-small/album.yaml");
    std::fs::read_to_string(path).unwrap()
}

fn submit_request(yaml: String) -> pb::SubmitRequest {
    pb::SubmitRequest { manifest_yaml: yaml, source: "s3://label-a/albums/corpus/".into(), output: String::new() }
}

fn task_ref(a: &pb::Assignment) -> pb::TaskRef {
    pb::TaskRef { job_id: a.job_id.clone(), stage: a.stage, track: a.track, lease: a.lease }
}

#[tokio::test]
async fn health_says_serving() {
    let server = start(RetryPolicy::default()).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
    for service in ["lacquer.v1.Albums", "lacquer.v1.Workers"] {
        let reply =
            health.check(tonic_health::pb::HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(reply.status(), tonic_health::pb::health_check_response::ServingStatus::Serving, "{service}");
    }
}

#[tokio::test]
async fn a_bad_manifest_is_invalid_argument_with_its_field_paths() {
    let server = start(RetryPolicy::default()).await;
    let mut albums = AlbumsClient::new(server.channel.clone());
    let yaml = fixture_manifest().replacen("gain_db: -2.0", "gain_db: 40.0", 1).replacen(
        "pan_law_db: -3.0",
        "pan_lw_db: -3.0",
        1,
    );
    let status = albums.submit(submit_request(yaml)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("tracks[0].stems[0].gain_db"), "{}", status.message());
    assert!(status.message().contains("mix.pan_lw_db"), "{}", status.message());
    let status = albums.submit(submit_request("version: 1\nalbum: [".into())).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{}", status.message());
    // Every input is probed through storage before the album is accepted.
    let mut missing = submit_request(fixture_manifest());
    missing.source = "s3://label-a/nothing-here/".into();
    let status = albums.submit(missing).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("tracks[2].stems[3].file"), "{}", status.message());
    assert!(status.message().contains("does not exist"), "{}", status.message());
    let listed = albums.list(pb::ListRequest {}).await.unwrap().into_inner();
    assert!(listed.jobs.is_empty(), "nothing was accepted");
}

#[tokio::test]
async fn an_album_runs_through_its_task_graph() {
    let server = start(RetryPolicy::default()).await;
    let mut albums = AlbumsClient::new(server.channel.clone());
    let mut worker = WorkersClient::new(server.channel.clone());
    let job = albums.submit(submit_request(fixture_manifest())).await.unwrap().into_inner().job.unwrap();
    assert_eq!(job.title, "Corpus Sessions");
    assert_eq!(job.tasks_total, 11, "3 mixes, 3 masters, the plan, 3 finalizes, the report");
    let mut events = albums.watch(pb::WatchRequest { job_id: job.id.clone() }).await.unwrap().into_inner();
    assert!(job.tasks.iter().all(|t| t.waiting.is_empty()));

    let scratch = tempfile::tempdir().unwrap();
    let runner = Runner::new(server._store.stores(), scratch.path().to_path_buf());
    let mut order = Vec::new();
    loop {
        let lease = worker.lease(pb::LeaseRequest { worker_id: "w1".into() }).await.unwrap().into_inner();
        let Some(task) = lease.task else { break };
        let stage = task.stage();
        if stage == pb::Stage::Finalize {
            // The album barrier: every master's result comes along.
            let inputs: serde_json::Value = serde_json::from_str(&task.inputs_json).unwrap();
            let masters = inputs["master"].as_array().unwrap();
            assert!(masters.len() == 3 && masters.iter().all(|m| m["file"]["path"].is_string()), "{inputs}");
            // And the plan, made once: every track's correction.
            assert_eq!(inputs["plan"]["corrections"].as_array().unwrap().len(), 3, "{inputs}");
            // With the album as probed at submit, every stem found.
            let album: serde_json::Value = serde_json::from_str(&task.album_json).unwrap();
            assert_eq!(album["inputs"].as_array().unwrap().len(), 13, "{album}");
        }
        let beat = worker
            .heartbeat(pb::HeartbeatRequest { task: Some(task_ref(&task)), progress: 0.5, waiting: String::new() })
            .await
            .unwrap();
        assert_eq!(beat.into_inner().action(), pb::heartbeat_reply::Action::Continue);
        let now = albums.get(pb::GetRequest { job_id: job.id.clone() }).await.unwrap().into_inner();
        let leased: Vec<f32> =
            now.tasks.iter().filter(|t| t.state() == pb::TaskState::Leased).map(|t| t.progress).collect();
        assert_eq!(leased, [0.5], "the heartbeat's progress shows");
        // A result quoting another lease is dropped.
        let mut stale = task_ref(&task);
        stale.lease += 1000;
        let reply = worker
            .complete(pb::CompleteRequest { task: Some(stale), result_json: "{}".into(), ..Default::default() })
            .await
            .unwrap();
        assert!(!reply.into_inner().accepted);
        let result = run_leased(&runner, &task).await.unwrap();
        let reply = worker
            .complete(pb::CompleteRequest { task: Some(task_ref(&task)), result_json: result, ..Default::default() })
            .await;
        assert!(reply.unwrap().into_inner().accepted);
        order.push(stage);
    }
    assert_eq!(order.len(), 11, "{order:?}");
    let first_finalize = order.iter().position(|s| *s == pb::Stage::Finalize).unwrap();
    assert_eq!(order.iter().filter(|s| **s == pb::Stage::Master).count(), 3);
    assert!(order[..first_finalize - 1].iter().all(|s| matches!(s, pb::Stage::Mix | pb::Stage::Master)), "{order:?}");
    assert_eq!(order[first_finalize - 1], pb::Stage::Plan, "the plan, once, at the barrier");
    assert_eq!(order.last(), Some(&pb::Stage::Report));

    let mut last = None;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(10), events.message()).await.unwrap().unwrap() {
        last = event.job;
    }
    let last = last.unwrap();
    assert_eq!(last.state(), pb::JobState::Succeeded, "the watch ends with the job");
    assert_eq!(last.tasks_done, 11);
    let report = albums.report(pb::ReportRequest { job_id: job.id.clone() }).await.unwrap().into_inner();
    let report: serde_json::Value = serde_json::from_str(&report.report_json).unwrap();
    assert_eq!(report["tracks"].as_array().unwrap().len(), 3, "{report}");
}

#[tokio::test]
async fn a_made_up_result_is_refused_and_costs_its_attempt() {
    let server = start(RetryPolicy { max_attempts: 10, first_backoff_ms: 10, lease_ms: 30_000 }).await;
    let mut albums = AlbumsClient::new(server.channel.clone());
    let mut worker = WorkersClient::new(server.channel.clone());
    let job = albums.submit(submit_request(fixture_manifest())).await.unwrap().into_inner().job.unwrap();
    let first = worker.lease(pb::LeaseRequest { worker_id: "w".into() }).await.unwrap().into_inner().task.unwrap();
    assert_eq!((first.stage(), first.track), (pb::Stage::Mix, Some(0)));
    let scratch = tempfile::tempdir().unwrap();
    let runner = Runner::new(server._store.stores(), scratch.path().to_path_buf());
    let real: serde_json::Value = serde_json::from_str(&run_leased(&runner, &first).await.unwrap()).unwrap();
    // The same task, leased again once its backoff has passed.
    let lease_again = |worker: &mut WorkersClient<Channel>| {
        let mut worker = worker.clone();
        async move {
            loop {
                let task = worker.lease(pb::LeaseRequest { worker_id: "w".into() }).await.unwrap().into_inner().task;
                match task {
                    Some(t) if t.stage == pb::Stage::Mix as i32 && t.track == Some(0) => return t,
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
    };
    let forged = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut value = real.clone();
        edit(&mut value);
        value.to_string()
    };
    let cases = [
        ("not JSON", "{".to_owned(), "not a result of this stage"),
        ("missing fields", "{\"stage\": 1}".to_owned(), "not a result of this stage"),
        (
            "another task's file",
            forged(&|v| v["file"]["Rendered"]["path"] = "mix/02-maple-leaf.wav".into()),
            "this task writes",
        ),
        (
            "a file outside the album",
            forged(&|v| v["file"]["Rendered"]["path"] = "../../label-b/x.wav".into()),
            "this task writes",
        ),
        ("a wrong size", forged(&|v| v["file"]["Rendered"]["size_bytes"] = 12.into()), "bytes in storage"),
        ("no hash", forged(&|v| v["file"]["Rendered"]["blake3"] = "".into()), "no content hash"),
    ];
    let mut task = first;
    for (attempt, (what, result, says)) in cases.into_iter().enumerate() {
        if attempt > 0 {
            task = lease_again(&mut worker).await;
        }
        assert_eq!(task.attempt as usize, attempt + 1);
        let status = worker
            .complete(pb::CompleteRequest { task: Some(task_ref(&task)), result_json: result, ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{what}: {status:?}");
        assert!(status.message().contains(says), "{what}: {}", status.message());
        // The refused result cost the lease: the task's error says why and
        // nothing downstream was released.
        let now = albums.get(pb::GetRequest { job_id: job.id.clone() }).await.unwrap().into_inner();
        assert!(now.tasks[0].last_error.contains("was refused"), "{what}: {:?}", now.tasks[0]);
        assert_eq!(now.tasks_done, 0, "{what}");
        assert_eq!(now.state(), pb::JobState::Running, "{what}");
    }
    // The real result counts.
    let task = lease_again(&mut worker).await;
    let result = run_leased(&runner, &task).await.unwrap();
    let reply = worker
        .complete(pb::CompleteRequest { task: Some(task_ref(&task)), result_json: result, ..Default::default() })
        .await
        .unwrap();
    assert!(reply.into_inner().accepted);
    let now = albums.get(pb::GetRequest { job_id: job.id }).await.unwrap().into_inner();
    assert_eq!(now.tasks_done, 1);
}

/// A coordinator with two tenants, tokens `aaaa…` and `bbbb…`, each allowed
/// the bucket named like it, and the worker token `wwww…`.
async fn start_two_tenants(first: &str, second: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.yaml");
    let tenant = |name: &str, token: &str| format!("  {name}: {{ token: {token}, allowed: [\"s3://{name}/\"] }}\n");
    let yaml = format!(
        "tenants:\n{}{}workers: {{ token: wwwwwwwwwwwwwwwwwwww }}\n",
        tenant(first, "aaaaaaaaaaaaaaaaaaaa"),
        tenant(second, "bbbbbbbbbbbbbbbbbbbb")
    );
    std::fs::write(&tokens, yaml).unwrap();
    start_with(RetryPolicy::default(), Auth::from_file(&tokens).unwrap()).await
}

/// A coordinator with tenants `a` (token `aaaa…`) allowed only
/// `s3://shared/a/` and `b` (`bbbb…`) allowed only `s3://shared/b/`, on one
/// bucket that holds the album under both prefixes.
async fn start_shared_bucket() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.yaml");
    let yaml = "tenants:\n  a: { token: aaaaaaaaaaaaaaaaaaaa, allowed: [\"s3://shared/a/\"] }\n  \
                b: { token: bbbbbbbbbbbbbbbbbbbb, allowed: [\"s3://shared/b/\"] }\n\
                workers: { token: wwwwwwwwwwwwwwwwwwww }\n";
    std::fs::write(&tokens, yaml).unwrap();
    let server = start_with(RetryPolicy::default(), Auth::from_file(&tokens).unwrap()).await;
    for location in ["s3://shared/a/corpus/", "s3://shared/b/secret/"] {
        server._store.put_fixture(location).unwrap();
    }
    server
}

#[tokio::test]
async fn no_location_reaches_another_tenants_prefix() {
    let server = start_shared_bucket().await;
    let (mut a, _) = with_token(&server.channel, "aaaaaaaaaaaaaaaaaaaa");
    let request = |source: &str, output: &str| pb::SubmitRequest {
        manifest_yaml: fixture_manifest(),
        source: source.into(),
        output: output.into(),
    };
    let own = "s3://shared/a/corpus/";
    for (source, output, field) in [
        ("s3://shared/a/../b/secret/", "s3://shared/a/out/", "source"),
        ("s3://shared/a/%2e%2e/b/secret/", "s3://shared/a/out/", "source"),
        ("s3://shared/a/%2E%2E/b/secret/", "s3://shared/a/out/", "source"),
        ("s3://shared/a/./../b/secret/", "s3://shared/a/out/", "source"),
        (own, "s3://shared/a/../b/planted/", "output"),
        (own, "s3://shared/a/%2e%2e/b/planted/", "output"),
        (own, "s3://shared/a%2f..%2fb/planted/", "output"),
        (own, "s3://shared/a/.%2E/b/planted/", "output"),
    ] {
        let status = a.submit(request(source, output)).await.unwrap_err();
        assert!(
            matches!(status.code(), tonic::Code::InvalidArgument | tonic::Code::PermissionDenied),
            "{source} -> {output}: {status:?}"
        );
        assert!(status.message().contains(field), "{source} -> {output}: names the field: {}", status.message());
    }
    // Through the manifest's own fields: a stem, and the output, written
    // as absolute s3:// locations that climb out of the tenant's prefix.
    let manifest = fixture_manifest();
    let stem = "file: 01-chorale-66/bass.flac";
    assert!(manifest.contains(stem));
    for (from, to) in [
        (stem, "file: s3://shared/a/../b/secret/01-chorale-66/bass.flac"),
        (stem, "file: s3://shared/a/%2e%2e/b/secret/01-chorale-66/bass.flac"),
        (stem, "file: \"%2e%2e/%2e%2e/b/secret/01-chorale-66/bass.flac\""),
    ] {
        let yaml = manifest.replacen(from, to, 1);
        let status = a
            .submit(pb::SubmitRequest { manifest_yaml: yaml, source: own.into(), output: String::new() })
            .await
            .unwrap_err();
        assert!(
            matches!(status.code(), tonic::Code::InvalidArgument | tonic::Code::PermissionDenied),
            "{to}: {status:?}"
        );
        assert!(status.message().contains("tracks[0].stems["), "{to}: {}", status.message());
    }
    assert!(a.list(pb::ListRequest {}).await.unwrap().into_inner().jobs.is_empty(), "nothing was accepted");
    let planted = server._store.server.root().join("shared/b/planted");
    assert!(!planted.exists(), "nothing was written into the other tenant's prefix");
    // The tenant's own prefix still works.
    a.submit(request(own, "s3://shared/a/out/")).await.unwrap();
}

/// A client whose every request carries `token`.
fn with_token(
    channel: &Channel,
    token: &str,
) -> (
    AlbumsClient<tonic::service::interceptor::InterceptedService<Channel, impl tonic::service::Interceptor + Clone>>,
    WorkersClient<tonic::service::interceptor::InterceptedService<Channel, impl tonic::service::Interceptor + Clone>>,
) {
    let header: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    let bearer = move |mut request: tonic::Request<()>| {
        request.metadata_mut().insert("authorization", header.clone());
        Ok(request)
    };
    (
        AlbumsClient::with_interceptor(channel.clone(), bearer.clone()),
        WorkersClient::with_interceptor(channel.clone(), bearer),
    )
}

#[tokio::test]
async fn tenants_see_only_their_own_jobs_and_buckets() {
    let server = start_two_tenants("label-a", "label-b").await;
    let (mut a, mut a_as_worker) = with_token(&server.channel, "aaaaaaaaaaaaaaaaaaaa");
    let (mut b, _) = with_token(&server.channel, "bbbbbbbbbbbbbbbbbbbb");
    let (mut worker_as_client, mut worker) = with_token(&server.channel, "wwwwwwwwwwwwwwwwwwww");

    let mut request = submit_request(fixture_manifest());
    request.source = "s3://label-a/corpus/".into();
    let job = a.submit(request.clone()).await.unwrap().into_inner().job.unwrap();
    assert_eq!(job.tenant, "label-a");

    // Another tenant cannot see, watch, cancel or read it.
    let id = || job.id.clone();
    assert_eq!(b.get(pb::GetRequest { job_id: id() }).await.unwrap_err().code(), tonic::Code::NotFound);
    assert_eq!(b.watch(pb::WatchRequest { job_id: id() }).await.unwrap_err().code(), tonic::Code::NotFound);
    assert_eq!(b.cancel(pb::CancelRequest { job_id: id() }).await.unwrap_err().code(), tonic::Code::NotFound);
    assert_eq!(b.report(pb::ReportRequest { job_id: id() }).await.unwrap_err().code(), tonic::Code::NotFound);
    assert!(b.list(pb::ListRequest {}).await.unwrap().into_inner().jobs.is_empty());
    assert_eq!(a.list(pb::ListRequest {}).await.unwrap().into_inner().jobs.len(), 1);

    // Nor name a bucket it is not allowed: refused before any task exists.
    let status = b.submit(request.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(status.message().contains("s3://label-a/corpus/"), "{}", status.message());
    let mut sneaky = request.clone();
    sneaky.source = "s3://label-b/corpus/".into();
    sneaky.output = "s3://label-a/stolen/".into();
    let status = b.submit(sneaky).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(status.message().contains("output: s3://label-a/stolen/"), "{}", status.message());

    // Tokens are checked, and each kind of token opens only its service.
    let mut anonymous = AlbumsClient::new(server.channel.clone());
    assert_eq!(anonymous.list(pb::ListRequest {}).await.unwrap_err().code(), tonic::Code::Unauthenticated);
    let (mut forged, _) = with_token(&server.channel, "cccccccccccccccccccc");
    assert_eq!(forged.list(pb::ListRequest {}).await.unwrap_err().code(), tonic::Code::Unauthenticated);
    assert_eq!(worker_as_client.list(pb::ListRequest {}).await.unwrap_err().code(), tonic::Code::PermissionDenied);
    let lease = pb::LeaseRequest { worker_id: "w".into() };
    assert_eq!(a_as_worker.lease(lease.clone()).await.unwrap_err().code(), tonic::Code::PermissionDenied);
    let task = worker.lease(lease).await.unwrap().into_inner().task.unwrap();
    assert_eq!(task.job_id, job.id, "the worker token leases");
}

#[tokio::test]
async fn tenants_take_turns_then_their_albums_do() {
    let server = start_two_tenants("big", "small").await;
    let (mut big, _) = with_token(&server.channel, "aaaaaaaaaaaaaaaaaaaa");
    let (mut small, _) = with_token(&server.channel, "bbbbbbbbbbbbbbbbbbbb");
    let (_, mut worker) = with_token(&server.channel, "wwwwwwwwwwwwwwwwwwww");
    let submit = |source: &str| {
        let mut request = submit_request(fixture_manifest());
        request.source = source.into();
        request
    };
    // The big label queues three albums before the small label's one.
    let mut big_jobs = Vec::new();
    for _ in 0..3 {
        big_jobs.push(big.submit(submit("s3://big/a/")).await.unwrap().into_inner().job.unwrap().id);
    }
    let small_job = small.submit(submit("s3://small/a/")).await.unwrap().into_inner().job.unwrap().id;
    // The small album has three tasks ready (its mixes): seven leases
    // alternate until it has none left.
    let mut served = Vec::new();
    for _ in 0..7 {
        let task = worker.lease(pb::LeaseRequest { worker_id: "w".into() }).await.unwrap().into_inner().task.unwrap();
        served.push(task.job_id);
    }
    let tenant_of = |id: &String| if *id == small_job { "small" } else { "big" };
    let tenants: Vec<&str> = served.iter().map(tenant_of).collect();
    assert_eq!(tenants, ["big", "small", "big", "small", "big", "small", "big"], "{served:?}");
    let big_served: Vec<&String> = served.iter().filter(|id| **id != small_job).collect();
    assert_eq!(
        big_served,
        [&big_jobs[0], &big_jobs[1], &big_jobs[2], &big_jobs[0]],
        "the big label's albums take turns"
    );
}

#[tokio::test]
async fn tls_when_a_certificate_is_configured() {
    use lacquer_coordinator::server::{Tls, serve_with_tls};
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let certificate_pem = certified.cert.pem();
    let tls = Tls {
        certificate_pem: certificate_pem.clone().into_bytes(),
        key_pem: certified.signing_key.serialize_pem().into_bytes(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stores = std::sync::Arc::new(lacquer_runtime::stores::Stores::new(Default::default()));
    let coordinator = Coordinator::new(RetryPolicy::default(), Auth::open(), stores);
    tokio::spawn(serve_with_tls(listener, coordinator, Some(tls), async {
        let _ = stopped.await;
    }));
    // A client that trusts the certificate gets through.
    let trusted = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&certificate_pem))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(trusted)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let listed = AlbumsClient::new(channel).list(pb::ListRequest {}).await.unwrap().into_inner();
    assert!(listed.jobs.is_empty());
    // Plain text is not spoken.
    let plain = Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await;
    if let Ok(plain) = plain {
        assert!(AlbumsClient::new(plain).list(pb::ListRequest {}).await.is_err(), "plain text refused");
    }
}

#[tokio::test]
async fn finished_jobs_keep_a_summary_and_their_report_until_the_retention_ends() {
    let store = AlbumStore::start(&["label-a"]).unwrap();
    store.put_fixture("s3://label-a/albums/corpus/").unwrap();
    let state = tempfile::tempdir().unwrap();
    let settings = Settings { retention: Duration::ZERO, ..Settings::default() };
    let open = || {
        Coordinator::open_with(
            RetryPolicy::default(),
            Auth::open(),
            store.stores(),
            Store::open(state.path()).unwrap(),
            settings,
        )
        .unwrap()
    };
    let coordinator = open();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, coordinator.clone(), async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{address}")).unwrap().connect().await.unwrap();
    let mut albums = AlbumsClient::new(channel.clone());
    let mut worker = WorkersClient::new(channel);

    // Too big a manifest is refused at once, naming the limit.
    let padded = format!("{}\n#{}\n", fixture_manifest(), "x".repeat(1 << 20));
    let status = albums.submit(submit_request(padded)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("manifest_yaml") && status.message().contains("1048576"), "{status:?}");

    // One album run to the end, one cancelled.
    let done = albums.submit(submit_request(fixture_manifest())).await.unwrap().into_inner().job.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let runner = Runner::new(store.stores(), scratch.path().to_path_buf());
    while let Some(task) = worker.lease(pb::LeaseRequest { worker_id: "w".into() }).await.unwrap().into_inner().task {
        let result = run_leased(&runner, &task).await.unwrap();
        let request = pb::CompleteRequest { task: Some(task_ref(&task)), result_json: result, ..Default::default() };
        assert!(worker.complete(request).await.unwrap().into_inner().accepted);
    }
    let cancelled = albums.submit(submit_request(fixture_manifest())).await.unwrap().into_inner().job.unwrap();
    albums.cancel(pb::CancelRequest { job_id: cancelled.id.clone() }).await.unwrap();
    let report = |albums: &mut AlbumsClient<Channel>, id: &str| {
        let (mut albums, id) = (albums.clone(), id.to_owned());
        async move { albums.report(pb::ReportRequest { job_id: id }).await }
    };
    let first = report(&mut albums, &done.id).await.unwrap().into_inner().report_json;
    assert!(first.contains("Corpus Sessions"));
    assert_eq!(
        report(&mut albums, &cancelled.id).await.unwrap_err().code(),
        tonic::Code::FailedPrecondition,
        "a cancelled job has no report"
    );

    // Past the retention (zero here) only the summary is kept.
    assert_eq!(coordinator.sweep(), 2);
    let gone = report(&mut albums, &done.id).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::FailedPrecondition);
    assert!(gone.message().contains("no longer kept"), "{}", gone.message());
    let summary = albums.get(pb::GetRequest { job_id: done.id.clone() }).await.unwrap().into_inner();
    assert_eq!(
        (summary.state(), summary.tasks_done, summary.title.as_str()),
        (pb::JobState::Succeeded, 11, "Corpus Sessions")
    );

    // A restarted coordinator loads the finished jobs as their summaries.
    drop((albums, worker));
    let _ = stop.send(());
    let _ = server.await;
    drop(coordinator);
    let reopened = open();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, reopened, std::future::pending()));
    let channel = Channel::from_shared(format!("http://{address}")).unwrap().connect().await.unwrap();
    let listed = AlbumsClient::new(channel).list(pb::ListRequest {}).await.unwrap().into_inner().jobs;
    let states: Vec<_> = listed.iter().map(|j| (j.id.clone(), j.state())).collect();
    assert_eq!(states, [(done.id, pb::JobState::Succeeded), (cancelled.id, pb::JobState::Cancelled)]);
}
