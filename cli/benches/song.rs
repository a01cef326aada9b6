//! End-to-end speed of one song through `lacquer master`: a pre-mixed
//! 3-minute stereo mix (24-bit, 44.1 kHz) mastered to -14 LUFS / -1 dBTP
//! into one 24-bit WAV, from a cold start. Prints x-realtime (audio
//! seconds per wall second) and the process's peak memory.
//!
//! `cargo bench -p lacquer --bench song` (`LACQUER_BENCH_RUNS` for more
//! than three runs; the best and the median are printed).

use std::path::Path;
use std::process::Command;

use lacquer_pipelines::decode::AudioReader;
use lacquer_pipelines::dsp::AudioBlock;

const SONG_SECONDS: usize = 180;

/// The example album's third song, its stems summed, repeated to three
/// minutes, written as a 24-bit stereo WAV.
fn write_mix(path: &Path) -> u32 {
    let stems = ["cello", "piano", "strings", "vox"];
    let mut mix: Vec<Vec<f32>> = vec![Vec::new(), Vec::new()];
    let mut rate_hz = 0;
    for stem in stems {
        let file_path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/album-small/03-tears-ballad/{stem}.flac"));
        let file = std::fs::File::open(&file_path).unwrap();
        let length = file.metadata().unwrap().len();
        let mut reader = AudioReader::open(file, length, Some("flac")).unwrap();
        rate_hz = reader.info().sample_rate_hz;
        let channels = reader.info().channels;
        let mut block = AudioBlock::new(channels, 4096);
        let mut position = 0;
        while reader.read(&mut block, 4096).unwrap() > 0 {
            for (c, out) in mix.iter_mut().enumerate() {
                let input = block.channel(c.min(channels - 1));
                if out.len() < position + input.len() {
                    out.resize(position + input.len(), 0.0);
                }
                for (o, x) in out[position..].iter_mut().zip(input) {
                    *o += x * 0.5;
                }
            }
            position += block.frames();
        }
    }
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: rate_hz,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    let frames = SONG_SECONDS * rate_hz as usize;
    let peak = mix.iter().flatten().fold(0f32, |m, x| m.max(x.abs()));
    let scale = 0.5 / peak * 8_388_607.0; // peaks at -6 dBFS, as a mix should
    for n in 0..frames {
        for channel in &mix {
            writer.write_sample((channel[n % channel.len()] * scale).round() as i32).unwrap();
        }
    }
    writer.finalize().unwrap();
    rate_hz
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let runs: usize =
        if smoke { 1 } else { std::env::var("LACQUER_BENCH_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(3) };
    let dir = tempfile::tempdir().unwrap();
    let rate_hz = write_mix(&dir.path().join("mix.wav"));
    let manifest = dir.path().join("song.yaml");
    std::fs::write(
        &manifest,
        format!(
            "version: 1\nalbum: {{ title: One Song, artist: Bench, sample_rate: {rate_hz} }}\n\
             matching:\n  loudness: {{ target_lufs: -14.0, mode: track }}\n  true_peak_dbtp: -1.0\n\
             deliverables:\n  - {{ name: master, format: wav, bit_depth: 24 }}\n\
             tracks:\n  - id: song\n    title: Song\n    stems:\n      - {{ name: mix, file: mix.wav }}\n"
        ),
    )
    .unwrap();
    let mut results = Vec::new();
    for run in 0..runs {
        let output = dir.path().join(format!("out-{run}"));
        let result = Command::new(env!("CARGO_BIN_EXE_lacquer"))
            .args(["master", "--json", manifest.to_str().unwrap(), "--output", output.to_str().unwrap()])
            .output()
            .expect("lacquer runs");
        assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
        let summary: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
        let (audio, wall) = (summary["audio_seconds"].as_f64().unwrap(), summary["seconds"].as_f64().unwrap());
        results.push((audio / wall, wall, summary["peak_memory_mb"].as_f64().unwrap_or(f64::NAN)));
    }
    results.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (best, median) = (results[0], results[results.len() / 2]);
    println!(
        "song/cold (one {SONG_SECONDS} s stereo mix → -14 LUFS, -1 dBTP, one 24-bit WAV): best {:.1}x realtime ({:.2} s), median {:.1}x ({:.2} s), peak memory {:.0} MB",
        best.0, best.1, median.0, median.1, best.2
    );
}
