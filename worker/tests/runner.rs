//! The Runner against a local store: every stage of a small album run
//! through it, its records reused as the content cache, and a cache that
//! misses exactly when what a task reads or writes has changed.

use std::path::Path;
use std::sync::Arc;

use lacquer_pipelines::manifest::{self, StorageRoot, ValidManifest};
use lacquer_pipelines::tasks::{FinalizeResult, Stage};
use lacquer_runtime::stores::{S3Options, Stores};
use lacquer_worker::run::{Done, Inputs, Progress, Runner, Task, TaskResult};

/// A mono 24-bit WAV of a quiet two-tone signal.
fn stem(path: &Path, seconds: f64, freq_hz: f64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 44_100,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for n in 0..(seconds * 44_100.0) as usize {
        let t = n as f64 / 44_100.0;
        let value =
            0.3 * (t * freq_hz * std::f64::consts::TAU).sin() + 0.1 * (t * 3.0 * freq_hz * std::f64::consts::TAU).sin();
        writer.write_sample((value * 8_388_607.0) as i32).unwrap();
    }
    writer.finalize().unwrap();
}

const MANIFEST: &str = "version: 1
album: { title: Runner, artist: Tests, label: Test Label }
deliverables: [{ name: cd, format: wav, bit_depth: 16 }, { name: lossless, format: flac, bit_depth: 24 }]
tracks:
  - { id: one, title: One, isrc: GBXXX2600001, stems: [{ name: a, file: a.wav }] }
  - { id: two, title: Two, stems: [{ name: b, file: b.wav, gain_db: -3 }] }
";

async fn album(dir: &Path, text: &str) -> ValidManifest {
    let base = StorageRoot::Local { dir: dir.to_path_buf() };
    let checked = manifest::check(text, &base, None).unwrap();
    let stores = Stores::new(S3Options::default());
    let probes = stores.probe_all(&checked.inputs).await.into_iter().map(|p| p.map_err(|e| e.into_message())).collect();
    checked.finish(probes).unwrap()
}

async fn run(runner: &Runner, album: &ValidManifest, stage: Stage, track: Option<usize>, inputs: &Inputs) -> Done {
    runner.run(album, Task { stage, track }, inputs, &Progress::default()).await.unwrap()
}

/// Every stage of the album; whether each task was cached, in graph order
/// (mixes, masters, the plan, finalizes, the report).
async fn whole(runner: &Runner, album: &ValidManifest) -> (Vec<bool>, Vec<FinalizeResult>) {
    let mut cached = Vec::new();
    let mut mixes = Vec::new();
    for t in 0..2 {
        let done = run(runner, album, Stage::Mix, Some(t), &Inputs::default()).await;
        cached.push(done.cached);
        let TaskResult::Mix(mix) = done.result else { panic!() };
        mixes.push(Some(mix));
    }
    let mut masters = Vec::new();
    for t in 0..2 {
        let inputs = Inputs { mix: mixes.clone(), ..Inputs::default() };
        let done = run(runner, album, Stage::Master, Some(t), &inputs).await;
        cached.push(done.cached);
        let TaskResult::Master(master) = done.result else { panic!() };
        masters.push(Some(master));
    }
    let inputs = Inputs { master: masters.clone(), ..Inputs::default() };
    let done = run(runner, album, Stage::Plan, None, &inputs).await;
    cached.push(done.cached);
    let TaskResult::Plan(plan) = done.result else { panic!() };
    let plan = Some(plan);
    let mut finals = Vec::new();
    for t in 0..2 {
        let inputs = Inputs { master: masters.clone(), plan: plan.clone(), ..Inputs::default() };
        let done = run(runner, album, Stage::Finalize, Some(t), &inputs).await;
        cached.push(done.cached);
        let TaskResult::Finalize(result) = done.result else { panic!() };
        finals.push(Some(result));
    }
    let inputs = Inputs { mix: mixes, master: masters, finalize: finals.clone(), plan };
    cached.push(run(runner, album, Stage::Report, None, &inputs).await.cached);
    (cached, finals.into_iter().flatten().collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stage_runs_once_and_is_reused_until_what_it_reads_changes() {
    let dir = tempfile::tempdir().unwrap();
    stem(&dir.path().join("a.wav"), 2.0, 220.0);
    stem(&dir.path().join("b.wav"), 2.0, 330.0);
    let valid = album(dir.path(), MANIFEST).await;
    let runner = Runner::new(Arc::new(Stores::new(S3Options::default())), dir.path().join("scratch"));
    let out = dir.path().join("masters");

    let (cached, finals) = whole(&runner, &valid).await;
    assert_eq!(cached, [false; 8], "a first run renders everything");
    for file in ["mix/one.wav", "master/two.wav", "cd/01-one.wav", "lossless/02-two.flac", "report.json"] {
        assert!(out.join(file).is_file(), "{file}");
    }
    assert_eq!(finals[0].files.len(), 2);

    // The same album again: every task is a record hit, nothing renders.
    let (cached, again) = whole(&runner, &valid).await;
    assert_eq!(cached, [true; 8]);
    assert_eq!(again, finals, "the same results, read from the records");

    // A published file gone: its task renders again (the record alone is
    // not trusted), the same bytes, and later tasks stay cached.
    let before = std::fs::read(out.join("master/one.wav")).unwrap();
    std::fs::remove_file(out.join("master/one.wav")).unwrap();
    let (cached, _) = whole(&runner, &valid).await;
    assert_eq!(cached, [true, true, false, true, true, true, true, true]);
    assert_eq!(std::fs::read(out.join("master/one.wav")).unwrap(), before, "rendering is deterministic");

    // One track's ISRC: its master and deliverables carry it, so exactly
    // those render again (and the report, which lists it); the mixes, the
    // plan and the other track do not.
    let changed = album(dir.path(), &MANIFEST.replace("GBXXX2600001", "GBXXX2600009")).await;
    let (cached, _) = whole(&runner, &changed).await;
    assert_eq!(cached, [true, true, false, true, true, false, true, false]);
    let master = std::fs::read(out.join("master/one.wav")).unwrap();
    assert!(master.windows(12).any(|w| w == b"GBXXX2600009"), "the master's tags follow the manifest");

    // One stem's content: that track's mix and master render; every
    // finalize does (the album pass matches each track to the album, which
    // now sounds different), and the report follows.
    stem(&dir.path().join("b.wav"), 2.0, 440.0);
    let (cached, _) = whole(&runner, &changed).await;
    assert_eq!(cached, [true, false, true, false, false, false, false, false]);
}
