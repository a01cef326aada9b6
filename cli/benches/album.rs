//! End-to-end speed of `lacquer master` on the example album: album audio
//! seconds per wall second (x-realtime) and the process's peak memory, from
//! a cold start (nothing cached) and again warm (everything cached).
//!
//! `cargo bench -p lacquer --bench album` (set `LACQUER_BENCH_RUNS` for
//! more than three cold runs; the best and the median are printed).

use std::path::Path;
use std::process::Command;

fn master(manifest: &Path, output: &Path) -> serde_json::Value {
    let result = Command::new(env!("CARGO_BIN_EXE_lacquer"))
        .args(["master", "--json", manifest.to_str().unwrap(), "--output", output.to_str().unwrap()])
        .output()
        .expect("lacquer runs");
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    serde_json::from_slice(&result.stdout).expect("a JSON summary")
}

fn number(summary: &serde_json::Value, field: &str) -> f64 {
    summary[field].as_f64().unwrap_or(f64::NAN)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it once as a smoke test.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let runs: usize =
        if smoke { 1 } else { std::env::var("LACQUER_BENCH_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(3) };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/album-small/album.yaml");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut cold = Vec::new();
    for _ in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let summary = master(&manifest, &dir.path().join("masters"));
        let (audio, wall) = (number(&summary, "audio_seconds"), number(&summary, "seconds"));
        cold.push((
            audio / wall,
            wall,
            number(&summary, "peak_memory_mb"),
            audio,
            summary["tracks"].as_array().map_or(0, Vec::len),
        ));
        if runs == 1 || cold.len() == runs {
            let warm = master(&manifest, &dir.path().join("masters"));
            println!(
                "album/warm (all cached): {:.3} s wall, {} rendered, peak memory {:.0} MB",
                number(&warm, "seconds"),
                warm["rendered"],
                number(&warm, "peak_memory_mb")
            );
        }
    }
    cold.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (best, median) = (cold[0], cold[cold.len() / 2]);
    println!(
        "album/cold ({} tracks, {:.1} s of audio, {cores} cores): best {:.1}x realtime ({:.2} s), median {:.1}x ({:.2} s), peak memory {:.0} MB",
        best.4, best.3, best.0, best.1, median.0, median.1, best.2
    );
}
