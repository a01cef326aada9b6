//! `lacquer submit|watch|status|list|cancel|report` against a real
//! coordinator served on loopback by the test, whose tasks the test
//! completes as a worker would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use lacquer_coordinator::auth::Auth;
use lacquer_coordinator::job::RetryPolicy;
use lacquer_coordinator::server::serve;
use lacquer_coordinator::service::Coordinator;
use lacquer_proto::v1 as pb;

const TENANT: &str = "aaaaaaaaaaaaaaaaaaaa";
const WORKER: &str = "wwwwwwwwwwwwwwwwwwww";

fn manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/album-small/album.yaml")
}

fn lacquer(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lacquer"))
        .args(args)
        .args(["--coordinator", url])
        .env("LACQUER_TOKEN", TENANT)
        .output()
        .unwrap()
}

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_submits_follows_and_fetches_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.yaml");
    std::fs::write(
        &tokens,
        format!(
            "tenants:\n  label-a: {{ token: {TENANT}, allowed: [\"s3://label-a/\"] }}\nworkers: {{ token: {WORKER} }}\n"
        ),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let store = lacquer_worker::testing::AlbumStore::start(&["label-a"]).unwrap();
    store.put_fixture("s3://label-a/corpus/").unwrap();
    let coordinator = Coordinator::new(RetryPolicy::default(), Auth::from_file(&tokens).unwrap(), store.stores());
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, coordinator, async {
        let _ = stopped.await;
    }));
    let manifest = manifest();
    let manifest = manifest.to_str().unwrap();
    let run = |args: Vec<String>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || lacquer(&url, &args.iter().map(String::as_str).collect::<Vec<_>>()))
    };
    let strings = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let submitted = run(strings(&["submit", manifest, "--source", "s3://label-a/corpus/", "--json"])).await.unwrap();
    let job = json(&submitted);
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(job["state"], "running");
    assert_eq!(job["tasks_total"], 11);
    let status = json(&run(strings(&["status", &id, "--json"])).await.unwrap());
    assert_eq!(status["tasks"].as_array().unwrap().len(), 11);
    assert_eq!(status["tasks"][0]["stage"], "mix");

    // `watch` follows the job while a worker runs every task.
    let watcher = run(strings(&["watch", &id, "--json"]));
    let channel = tonic::transport::Channel::from_shared(url.clone()).unwrap().connect().await.unwrap();
    let header: tonic::metadata::MetadataValue<_> = format!("Bearer {WORKER}").parse().unwrap();
    let mut worker = pb::workers_client::WorkersClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", header.clone());
        Ok(r)
    });
    let scratch = tempfile::tempdir().unwrap();
    let runner = lacquer_worker::run::Runner::new(store.stores(), scratch.path().to_path_buf());
    while let Some(task) = worker.lease(pb::LeaseRequest { worker_id: "w".into() }).await.unwrap().into_inner().task {
        let result = lacquer_worker::testing::run_leased(&runner, &task).await.unwrap();
        let task_ref = pb::TaskRef { job_id: task.job_id, stage: task.stage, track: task.track, lease: task.lease };
        worker
            .complete(pb::CompleteRequest { task: Some(task_ref), result_json: result, ..Default::default() })
            .await
            .unwrap();
    }
    let watched = watcher.await.unwrap();
    let last = json(&watched);
    assert_eq!(last["state"], "succeeded");
    assert_eq!(last["tasks_done"], 11);
    let report = run(strings(&["report", &id])).await.unwrap();
    assert!(report.status.success());
    assert!(String::from_utf8_lossy(&report.stdout).contains("\"title\":\"Corpus Sessions\""));

    // A second album, cancelled while `submit --wait` follows it: exit 1.
    let waiting = run(strings(&["submit", manifest, "--source", "s3://label-a/corpus/", "--wait", "--json"]));
    let mut second = None;
    for _ in 0..100 {
        let listed = json(&run(strings(&["list", "--json"])).await.unwrap());
        if let Some(job) = listed.as_array().unwrap().iter().find(|j| j["id"] != id.as_str()) {
            second = Some(job["id"].as_str().unwrap().to_owned());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let second = second.expect("the second job is listed");
    let cancelled = json(&run(strings(&["cancel", &second, "--json"])).await.unwrap());
    assert_eq!(cancelled["state"], "cancelled");
    let waited = waiting.await.unwrap();
    assert_eq!(waited.status.code(), Some(3), "a cancelled job is not a finished album");

    // A bad manifest: exit 1 and the field path, as `lacquer validate` says it.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, std::fs::read_to_string(manifest).unwrap().replacen("gain_db: -2.0", "gain_db: 40.0", 1))
        .unwrap();
    let refused = run(strings(&["submit", bad.to_str().unwrap(), "--source", "s3://label-a/corpus/"])).await.unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("tracks[0].stems[0].gain_db"));
    // Another label's bucket, and a wrong token: clear refusals.
    let denied = run(strings(&["submit", manifest, "--source", "s3://label-b/corpus/"])).await.unwrap();
    assert_eq!(denied.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("not allowed"), "{denied:?}");
    let url2 = url.clone();
    let stranger = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_lacquer"))
            .args(["list", "--coordinator", &url2, "--token", "not-a-real-token-at-all"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(stranger.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&stranger.stderr).contains("not signed in"), "{stranger:?}");
}

/// TLS: the CLI and the example Python client reach an https://
/// coordinator whose certificate they are told to trust (`--ca-cert`), and
/// refuse one they cannot verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_speak_tls_to_a_coordinator_they_trust() {
    use lacquer_coordinator::server::{Tls, serve_with_tls};
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/python/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/setup", python.display());
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("coordinator.pem");
    std::fs::write(&ca, certified.cert.pem()).unwrap();
    let tls = Tls {
        certificate_pem: certified.cert.pem().into_bytes(),
        key_pem: certified.signing_key.serialize_pem().into_bytes(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://localhost:{}", listener.local_addr().unwrap().port());
    let stores = std::sync::Arc::new(lacquer_runtime::stores::Stores::new(Default::default()));
    let coordinator = Coordinator::new(RetryPolicy::default(), Auth::open(), stores);
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_with_tls(listener, coordinator, Some(tls), async {
        let _ = stopped.await;
    }));
    let trust = |yes: bool| if yes { vec!["--ca-cert".to_owned(), ca.display().to_string()] } else { Vec::new() };

    // The CLI.
    let list = |extra: Vec<String>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_lacquer"))
                .args(["list", "--json", "--coordinator", &url])
                .args(extra)
                .output()
                .unwrap()
        })
    };
    let trusted = list(trust(true)).await.unwrap();
    assert!(trusted.status.success(), "{}", String::from_utf8_lossy(&trusted.stderr));
    assert_eq!(String::from_utf8_lossy(&trusted.stdout).trim(), "[]");
    let untrusted = list(trust(false)).await.unwrap();
    assert_eq!(untrusted.status.code(), Some(2));
    let said = String::from_utf8_lossy(&untrusted.stderr);
    assert!(said.contains("cannot reach the coordinator") || said.contains("unavailable"), "{said}");

    // The Python client: a refused manifest comes back as the coordinator's
    // INVALID_ARGUMENT, so the channel worked; without the CA, UNAVAILABLE.
    let submit = |extra: Vec<String>| {
        tokio::process::Command::new(&python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python/lacquer_client.py"))
            .arg(manifest())
            .args(["--coordinator", &url, "--source", "/nowhere/at/all/"])
            .args(extra)
            .output()
    };
    let trusted = submit(trust(true)).await.unwrap();
    let said = String::from_utf8_lossy(&trusted.stderr);
    assert!(!trusted.status.success());
    assert!(said.contains("INVALID_ARGUMENT") && said.contains("does not exist"), "{said}");
    let untrusted = submit(trust(false)).await.unwrap();
    let said = String::from_utf8_lossy(&untrusted.stderr);
    assert!(said.contains("UNAVAILABLE"), "{said}");
}
