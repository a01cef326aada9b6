//! The distributed system end to end, as real processes on loopback: an
//! S3-compatible server holding the example album's stems, the
//! coordinator, two workers, and `lacquer submit --wait`. The delivered
//! files in S3 must be byte-identical to those `lacquer master` writes on
//! this machine — first as is, then with a worker killed (SIGKILL)
//! mid-task, then with the coordinator killed and restarted mid-job.
//! Submitting again renders nothing; changing one stem re-renders only
//! what depends on it.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lacquer_worker::testing::{AlbumStore, fixture_dir};

mod support;
use support::Process;

/// Content hash of every file under `dir` (keys relative to it), leaving
/// out the task records and scratch space.
fn hashes(dir: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let key = path.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            if key.starts_with(".lacquer") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                found.insert(key, blake3::hash(&std::fs::read(&path).unwrap()).to_hex().to_string());
            }
        }
    }
    found
}

/// A loopback port free now (for a coordinator that must come back on it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Cluster {
    store: AlbumStore,
    state: tempfile::TempDir,
    scratch: tempfile::TempDir,
    port: u16,
    /// Where the coordinator and the first worker serve their metrics.
    metrics: (String, String),
    coordinator: Option<Process>,
    workers: Vec<Process>,
    /// Extra arguments of every worker.
    worker_args: Vec<String>,
}

impl Cluster {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start_coordinator(&mut self) {
        let listen = format!("127.0.0.1:{}", self.port);
        let state = self.state.path().to_str().unwrap();
        let args =
            ["--listen", &listen, "--state-dir", state, "--lease-ms", "1500", "--metrics-listen", &self.metrics.0];
        let mut process = Process::start(env!("CARGO_BIN_EXE_lacquer-coordinator"), &args, &self.store.env());
        process.wait_for("lacquer-coordinator listening");
        self.coordinator = Some(process);
    }

    /// Starts a worker; the first one logs JSON and serves metrics.
    fn start_worker(&mut self, id: &str) {
        let scratch = self.scratch.path().join(id);
        let mut args = vec!["--concurrency", "1"];
        args.extend(self.worker_args.iter().map(String::as_str));
        if self.workers.is_empty() {
            args.extend_from_slice(&["--log-format", "json", "--metrics-listen", &self.metrics.1]);
        }
        let worker = support::worker(&self.url(), id, &scratch, &args, &self.store.env());
        self.workers.push(worker);
    }

    /// `lacquer` with the store's environment and this coordinator.
    fn lacquer(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_lacquer"))
            .args(args)
            .args(["--coordinator", &self.url()])
            .envs(self.store.env())
            .output()
            .unwrap()
    }

    /// Submits the example album from `source` to `output` and returns its job id.
    fn submit(&self, source: &str, output: &str) -> String {
        let manifest = fixture_dir().join("album.yaml");
        let out =
            self.lacquer(&["submit", manifest.to_str().unwrap(), "--source", source, "--output", output, "--json"]);
        assert!(out.status.success(), "submit: {}", String::from_utf8_lossy(&out.stderr));
        let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        job["id"].as_str().unwrap().to_owned()
    }

    fn status(&self, job: &str) -> serde_json::Value {
        let out = self.lacquer(&["status", job, "--json"]);
        assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Follows the job to its end with `lacquer watch`; returns its last state.
    fn wait(&self, job: &str) -> serde_json::Value {
        let out = self.lacquer(&["watch", job, "--json"]);
        let last = String::from_utf8_lossy(&out.stdout).lines().last().map(str::to_owned).unwrap_or_default();
        assert!(out.status.success(), "{job} did not succeed: {last}\n{}", self.logs());
        serde_json::from_str(&last).unwrap()
    }

    /// Polls until `ready(status)` holds.
    fn wait_until(&self, job: &str, what: &str, ready: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if ready(&self.status(job)) {
                return;
            }
            assert!(Instant::now() < deadline, "{job}: no {what} within 120 s\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for (name, process) in
            self.coordinator.iter().map(|c| ("coordinator", c)).chain(self.workers.iter().map(|w| ("worker", w)))
        {
            all.push_str(&format!("--- {name}\n{}", process.log()));
        }
        all
    }

    /// The files delivered under `s3://label/<prefix>/`, as the server stores them.
    fn delivered(&self, prefix: &str) -> BTreeMap<String, String> {
        hashes(&self.store.server.root().join("label").join(prefix))
    }
}

/// Which tasks of a finished job were served from the cache.
fn cached_tasks(job: &serde_json::Value) -> Vec<String> {
    job["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["cached"] == true)
        .map(|t| format!("{} {}", t["stage"].as_str().unwrap(), t["track"].as_str().unwrap()))
        .collect()
}

/// What `lacquer master` delivers on this machine: the files' hashes.
fn embedded_reference() -> BTreeMap<String, String> {
    let reference_dir = tempfile::tempdir().unwrap();
    let reference_out = reference_dir.path().join("masters");
    let manifest = fixture_dir().join("album.yaml");
    let embedded = Command::new(env!("CARGO_BIN_EXE_lacquer"))
        .args(["master", manifest.to_str().unwrap(), "--quiet", "--output", reference_out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(embedded.status.success(), "{}", String::from_utf8_lossy(&embedded.stderr));
    let reference = hashes(&reference_out);
    assert_eq!(reference.len(), 17, "3 mixes, 3 masters, 9 deliverables, 2 reports: {reference:?}");
    reference
}

/// A coordinator and two workers over an S3 server holding the example
/// album at `s3://label/corpus/`.
fn cluster(worker_args: &[&str]) -> Cluster {
    let store = AlbumStore::start(&["label"]).unwrap();
    store.put_fixture("s3://label/corpus/").unwrap();
    let mut cluster = Cluster {
        store,
        state: tempfile::tempdir().unwrap(),
        scratch: tempfile::tempdir().unwrap(),
        port: free_port(),
        metrics: (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port())),
        coordinator: None,
        workers: Vec::new(),
        worker_args: worker_args.iter().map(|a| a.to_string()).collect(),
    };
    cluster.start_coordinator();
    cluster.start_worker("w1");
    cluster.start_worker("w2");
    cluster
}

#[test]
fn two_workers_deliver_what_lacquer_master_delivers_through_kills_and_restarts() {
    let reference = embedded_reference();
    let mut cluster = cluster(&[]);

    // 1. Two workers, byte for byte what `lacquer master` wrote.
    let job = cluster.submit("s3://label/corpus/", "s3://label/out/");
    let done = cluster.wait(&job);
    assert_eq!(done["state"], "succeeded");
    assert_eq!(cluster.delivered("out"), reference, "distributed and embedded deliver the same bytes");
    assert_eq!(done["tasks_cached"], 0);
    for worker in &cluster.workers {
        assert!(worker.log().contains("finished"), "both workers took tasks:\n{}", cluster.logs());
    }

    // Metrics on both processes, and JSON logs that name job and task.
    let worker_metrics = support::scrape(&cluster.metrics.1);
    for series in [
        "lacquer_worker_tasks_total{stage=\"mix\",outcome=\"rendered\"}",
        "lacquer_worker_task_seconds_bucket{stage=\"finalize\"",
        "lacquer_worker_task_realtime_bucket{stage=\"master\"",
        "lacquer_worker_bytes_read_total",
        "lacquer_worker_bytes_written_total",
    ] {
        assert!(support::sample(&worker_metrics, series).is_some(), "{series} missing:\n{worker_metrics}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let coordinator_metrics = loop {
        let text = support::scrape(&cluster.metrics.0);
        if support::sample(&text, "lacquer_jobs{state=\"succeeded\"}") == Some(1.0) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for (series, at_least) in [
        ("lacquer_jobs{state=\"succeeded\"}", 1.0),
        ("lacquer_tasks{state=\"ready\"}", 0.0),
        ("lacquer_leases_total", 11.0),
        ("lacquer_tasks_completed_total{stage=\"finalize\",outcome=\"rendered\"}", 3.0),
        ("lacquer_task_seconds_count{stage=\"mix\"}", 3.0),
        ("lacquer_task_realtime_count{stage=\"master\"}", 3.0),
        ("lacquer_bytes_read_total", 20e6),
        ("lacquer_bytes_written_total", 20e6),
    ] {
        let value = support::sample(&coordinator_metrics, series);
        assert!(value.is_some_and(|v| v >= at_least), "{series} = {value:?}:\n{coordinator_metrics}");
    }
    let json_log = cluster.workers[0].log();
    let line = json_log.lines().find(|l| l.contains("\"finished\"")).expect("a finished task in the JSON log");
    let line: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["span"]["job"], job, "{line}");
    assert!(line["span"]["stage"].is_string() && line["seconds"].is_f64(), "{line}");

    // 2. The same album again: every task is already done.
    let again = cluster.submit("s3://label/corpus/", "s3://label/out/");
    let done = cluster.wait(&again);
    assert_eq!(done["tasks_cached"], 11, "{done}");

    // 3. One stem changed: only its mix and master, then the album pass
    //    (every finalize: the plan moved) and the report, run again.
    let changed = cluster.store.server.root().join("label/corpus2");
    cluster.store.put_fixture("s3://label/corpus2/").unwrap();
    let stem = changed.join("02-maple-leaf/bass.flac");
    std::fs::remove_file(&stem).unwrap();
    std::fs::copy(fixture_dir().join("01-chorale-66/bass.flac"), &stem).unwrap();
    let job = cluster.submit("s3://label/corpus2/", "s3://label/out/");
    let done = cluster.wait(&job);
    assert_eq!(done["state"], "succeeded");
    let cached = cached_tasks(&done);
    assert_eq!(
        cached,
        ["mix 01-chorale-66", "mix 03-tears-ballad", "master 01-chorale-66", "master 03-tears-ballad"],
        "{done}"
    );

    // 4. A worker killed in the middle of a task: its lease runs out and
    //    the other worker does the task again, to the same bytes.
    let job = cluster.submit("s3://label/corpus/", "s3://label/out-worker-killed/");
    let busy = |worker: &Process| {
        let tag = format!("job={job}");
        worker.log().lines().rfind(|l| l.contains(&tag)).is_some_and(|l| l.ends_with("started"))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let victim = loop {
        if let Some(victim) = cluster.workers.iter().position(busy) {
            break victim;
        }
        assert!(Instant::now() < deadline, "no worker took a task:\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(cluster.workers.remove(victim)); // SIGKILL, mid-task
    let done = cluster.wait(&job);
    assert_eq!(done["state"], "succeeded");
    let retried = done["tasks"].as_array().unwrap().iter().filter(|t| t["attempts"].as_u64() >= Some(2)).count();
    assert_eq!(retried, 1, "the killed worker's task ran again, and only it: {done}");
    assert_eq!(cluster.delivered("out-worker-killed"), reference);
    let expired = support::sample(&support::scrape(&cluster.metrics.0), "lacquer_leases_expired_total");
    assert_eq!(expired, Some(1.0), "the killed worker's lease ran out");
    cluster.start_worker("w3");

    // 5. The coordinator killed mid-job and started again on its state:
    //    the workers reconnect, the job finishes, nothing is lost or doubled.
    let job = cluster.submit("s3://label/corpus/", "s3://label/out-coordinator-killed/");
    cluster.wait_until(&job, "3 finished tasks", |s| s["tasks_done"].as_u64().unwrap() >= 3);
    drop(cluster.coordinator.take()); // SIGKILL
    // Down for longer than a lease (1.5 s): results finished meanwhile are
    // retried by their workers until it is back, and still count.
    std::thread::sleep(Duration::from_millis(2_000));
    cluster.start_coordinator();
    let done = cluster.wait(&job);
    assert_eq!(done["state"], "succeeded");
    assert_eq!(done["tasks_done"], 11);
    assert_eq!(cluster.delivered("out-coordinator-killed"), reference);
    // Nothing was lost to the restart: at most one task ran twice (a lease
    // whose reply the kill cut off reaches no worker and runs out).
    let retried = done["tasks"].as_array().unwrap().iter().filter(|t| t["attempts"].as_u64() >= Some(2)).count();
    assert!(retried <= 1, "{done}");

    // 6. SIGTERM: a worker finishes (or hands back) and exits cleanly.
    let mut leaving = cluster.workers.remove(0);
    leaving.terminate();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = leaving.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the worker did not stop on SIGTERM:\n{}", leaving.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}:\n{}", leaving.log());
    assert!(leaving.log().contains("lacquer-worker stopped"), "{}", leaving.log());
}

#[test]
fn a_30_s_storage_outage_and_a_coordinator_kill_are_survived() {
    let reference = embedded_reference();
    let mut cluster = cluster(&["--storage-outage-budget-s", "120"]);
    // `lacquer submit --wait`, as a label runs it, for the whole story.
    let manifest = fixture_dir().join("album.yaml");
    let mut waiting = std::process::Command::new(env!("CARGO_BIN_EXE_lacquer"))
        .args(["submit", manifest.to_str().unwrap(), "--source", "s3://label/corpus/", "--output", "s3://label/out/"])
        .args(["--wait", "--json", "--coordinator", &cluster.url()])
        .envs(cluster.store.env())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = waiting.stdout.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let kept = lines.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            kept.lock().unwrap().push(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        if let Some(first) = lines.lock().unwrap().first() {
            let job: serde_json::Value = serde_json::from_str(first).unwrap();
            break job["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "submit printed nothing:\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(20));
    };
    cluster.wait_until(&job, "2 finished tasks", |s| s["tasks_done"].as_u64().unwrap() >= 2);

    // Object storage goes away for 30 s.
    let outage = Instant::now();
    cluster.store.server.stop();
    // Running tasks wait for it (status says so) without spending attempts.
    cluster.wait_until(&job, "a task waiting for storage", |s| {
        s["tasks"].as_array().unwrap().iter().any(|t| t["waiting"].as_str().is_some_and(|w| w.contains("unreachable")))
    });
    // A submission meanwhile is UNAVAILABLE, not "a damaged file".
    let refused = cluster.lacquer(&["submit", manifest.to_str().unwrap(), "--source", "s3://label/corpus/"]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(said.contains("unavailable") && said.contains("unreachable"), "{said}");
    assert!(!said.contains("damaged"), "{said}");
    // The coordinator is killed in the middle of it, and comes back.
    std::thread::sleep(Duration::from_secs(5));
    drop(cluster.coordinator.take()); // SIGKILL
    std::thread::sleep(Duration::from_secs(2));
    cluster.start_coordinator();
    std::thread::sleep(Duration::from_secs(30).saturating_sub(outage.elapsed()));
    cluster.store.server.restart().unwrap();

    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = waiting.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "submit --wait did not end:\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut waiting.stderr.take().unwrap(), &mut stderr).unwrap();
    let last: serde_json::Value = serde_json::from_str(lines.lock().unwrap().last().unwrap()).unwrap();
    assert!(status.success(), "submit --wait: {status} {last}\n{stderr}\n{}", cluster.logs());
    assert_eq!(last["state"], "succeeded");
    assert!(stderr.contains("lost the coordinator"), "{stderr}");
    assert_eq!(cluster.delivered("out"), reference, "the same bytes as lacquer master");
    // The outage spent no attempts: at most the one task whose lease reply
    // the kill cut off ran twice.
    let retried = last["tasks"].as_array().unwrap().iter().filter(|t| t["attempts"].as_u64() >= Some(2)).count();
    assert!(retried <= 1, "{last}");
    let retries = support::sample(&support::scrape(&cluster.metrics.1), "lacquer_worker_storage_retries_total");
    assert!(retries.is_some_and(|r| r >= 1.0), "the worker waited for storage: {retries:?}");
}
