//! The example album delivered as a CD for the pressing plant (`format:
//! ddp`): the DDP fileset read back field by field with our reader, the CUE
//! sheet read by cdrdao and cuetools and the CD-TEXT by libburn's cdrskin
//! (installed by `scripts/setup`), all
//! held to the manifest and to a layout worked out here from the track
//! files' lengths; the image's samples are the 16-bit deliverable's.

use std::path::{Path, PathBuf};
use std::process::Command;

use lacquer_pipelines::disc::read_ddp;

const UPC: &str = "0012345678905";
const ISRCS: [&str; 3] = ["GBXXX2600001", "GBXXX2600002", "GBXXX2600003"];
const FRAME_SAMPLES: u64 = 588;
const FRAME_BYTES: usize = 2352;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/album-small")
}

/// The example album with one `ddp` deliverable and, for each track after
/// the first, `gap_s` as given (`None`: the default).
fn manifest(dir: &Path, gap_s: Option<f64>) -> PathBuf {
    let text = std::fs::read_to_string(fixture().join("album.yaml")).unwrap();
    let start = text.find("deliverables:").unwrap();
    let end = text.find("tracks:").unwrap();
    let mut text = format!(
        "{}deliverables:\n  - {{ name: disc, format: ddp, sample_rate: 44100, bit_depth: 16, dither: shaped }}\n\n{}",
        &text[..start],
        &text[end..]
    );
    if let Some(gap_s) = gap_s {
        for id in ["02-maple-leaf", "03-tears-ballad"] {
            text = text.replace(&format!("- id: {id}\n"), &format!("- id: {id}\n    gap_s: {gap_s}\n"));
        }
    }
    let text = text.replace("source: .", &format!("source: {}", fixture().display()));
    let path = dir.join(format!("album-{}.yaml", gap_s.map_or("default".to_owned(), |g| g.to_string())));
    std::fs::write(&path, text).unwrap();
    path
}

fn master(manifest: &Path, output: &Path) {
    let result = Command::new(env!("CARGO_BIN_EXE_lacquer"))
        .args(["master", "--quiet", manifest.to_str().unwrap(), "--output", output.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
}

/// A track file's 16-bit stereo samples as bytes (little-endian, interleaved).
fn pcm_bytes(path: &Path) -> Vec<u8> {
    let mut reader = hound::WavReader::open(path).unwrap();
    let spec = reader.spec();
    assert_eq!((spec.sample_rate, spec.bits_per_sample, spec.channels), (44_100, 16, 2));
    reader.samples::<i16>().flat_map(|s| s.unwrap().to_le_bytes()).collect()
}

fn run(command: &str, args: &[&str], dir: &Path) -> String {
    let output = Command::new(command).args(args).current_dir(dir).output().unwrap_or_else(|e| {
        panic!("{command} is needed (scripts/setup installs it): {e}");
    });
    assert!(output.status.success(), "{command}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Checks the disc in `out/disc` against tracks separated by `gap_frames`
/// (0: joined sample-exactly).
fn check_disc(out: &Path, gap_frames: u64) {
    let disc = out.join("disc");
    let tracks: Vec<Vec<u8>> = ["01-01-chorale-66", "02-02-maple-leaf", "03-03-tears-ballad"]
        .iter()
        .map(|name| pcm_bytes(&disc.join(format!("tracks/{name}.wav"))))
        .collect();

    // Where each track should start, from its neighbours' lengths alone.
    let mut first_samples = vec![150 * FRAME_SAMPLES];
    let mut starts = vec![150];
    for track in &tracks[..2] {
        let end = first_samples.last().unwrap() + track.len() as u64 / 4;
        if gap_frames == 0 {
            first_samples.push(end);
            starts.push(end / FRAME_SAMPLES);
        } else {
            let start = end.div_ceil(FRAME_SAMPLES) + gap_frames;
            first_samples.push(start * FRAME_SAMPLES);
            starts.push(start);
        }
    }
    let end = first_samples[2] + tracks[2].len() as u64 / 4;
    let lead_out = end.div_ceil(FRAME_SAMPLES);

    // The DDP fileset, read back.
    let ddp = read_ddp(&disc.join("ddp")).unwrap();
    assert_eq!((ddp.level.as_str(), ddp.upc.as_str(), ddp.disc_type.as_str()), ("DDP 2.00", UPC, "CD"));
    assert_eq!(ddp.streams[0], ("D0".to_owned(), lead_out, 150, "IMAGE.DAT".to_owned()));
    let pq_bytes = std::fs::metadata(disc.join("ddp/PQDESCR")).unwrap().len();
    assert_eq!(ddp.streams[1], ("S0".to_owned(), pq_bytes, 0, "PQDESCR".to_owned()));
    let index_one: Vec<(String, u64, String, String)> = ddp
        .pq
        .iter()
        .filter(|p| p.1 == 1)
        .map(|(track, _, frame, isrc, upc)| (track.clone(), *frame, isrc.clone(), upc.clone()))
        .collect();
    let mut expected: Vec<(String, u64, String, String)> =
        (0..3).map(|i| (format!("{:02}", i + 1), starts[i], ISRCS[i].to_owned(), UPC.to_owned())).collect();
    expected.push(("AA".to_owned(), lead_out, String::new(), UPC.to_owned()));
    assert_eq!(index_one, expected, "PQ: tracks, INDEX 01 frames, ISRCs, UPC, lead-out");
    let titles = ["Chorale BWV 66.6 (band)", "Maple Leaf Rag", "Aus meinen Traenen spriessen (ballad)"];
    let performer = "The Corpus Players";
    let cd_text: Vec<(String, String)> = std::iter::once("Corpus Sessions")
        .chain(titles)
        .map(|title| (title.to_owned(), performer.to_owned()))
        .collect();
    assert_eq!(ddp.cd_text, cd_text, "CD-TEXT: album and track titles, performer (every pack's CRC checked)");
    let gaps: Vec<u64> = ddp.pq.iter().filter(|p| p.1 == 0).map(|p| p.2).collect();
    let expected_gaps: Vec<u64> =
        if gap_frames == 0 { vec![0] } else { vec![0, starts[1] - gap_frames, starts[2] - gap_frames] };
    assert_eq!(gaps, expected_gaps, "INDEX 00: the first pregap, then each gap");

    // The image: silence, then each track's samples exactly where it starts.
    let image = std::fs::read(disc.join("ddp/IMAGE.DAT")).unwrap();
    assert_eq!(image.len() as u64, lead_out * FRAME_BYTES as u64);
    let mut covered = vec![false; image.len()];
    for (track, &first) in tracks.iter().zip(&first_samples) {
        let at = first as usize * 4;
        assert!(image[at..at + track.len()] == track[..], "the image holds the 16-bit deliverable's samples");
        covered[at..at + track.len()].fill(true);
    }
    assert!(image.iter().zip(&covered).all(|(byte, covered)| *covered || *byte == 0), "silence between");
    if gap_frames == 0 {
        assert_eq!(first_samples[1] as usize * 4, first_samples[0] as usize * 4 + tracks[0].len(), "joined");
    }
    run("md5sum", &["-c", "--quiet", "CHECKSUM.MD5"], &disc.join("ddp"));

    // The CUE sheet and its WAV (from 00:02:00 on), read by cdrdao and cuetools.
    let wav = pcm_bytes(&disc.join("album.wav"));
    assert!(wav[..] == image[150 * FRAME_BYTES..], "album.wav holds the image's samples from 00:02:00");
    let toc = run("cdrdao", &["show-toc", "album.cue"], &disc);
    assert!(toc.contains(&format!("CATALOG NUMBER: {UPC}")), "{toc}");
    let isrcs: Vec<String> =
        toc.lines().filter_map(|l| l.trim().strip_prefix("ISRC ")).map(|i| i.replace(' ', "")).collect();
    assert_eq!(isrcs, ISRCS, "{toc}");
    let toc_starts: Vec<u64> = toc
        .lines()
        .filter(|l| l.trim().starts_with("START"))
        .map(|l| l.split('(').nth(1).unwrap().trim_end_matches(')').trim().parse().unwrap())
        .collect();
    assert_eq!(toc_starts, starts.iter().map(|s| s - 150).collect::<Vec<_>>(), "{toc}");
    let breakpoints = run("cuebreakpoints", &["album.cue"], &disc);
    let as_frames = |line: &str| -> u64 {
        let (minutes, rest) = line.split_once(':').unwrap();
        let (seconds, frames) = rest.split_once('.').unwrap();
        (minutes.parse::<u64>().unwrap() * 60 + seconds.parse::<u64>().unwrap()) * 75 + frames.parse::<u64>().unwrap()
    };
    let breaks: Vec<u64> = breakpoints.lines().map(as_frames).collect();
    assert_eq!(breaks, starts[1..].iter().map(|s| s - 150).collect::<Vec<_>>(), "{breakpoints}");
    let cue_titles = run("cueprint", &["-d", "", "-t", "%t\n", "album.cue"], &disc);
    assert_eq!(cue_titles.lines().filter(|l| !l.is_empty()).collect::<Vec<_>>(), titles);
    // The CD-TEXT packs as libburn reads them.
    let sheet = run("cdrskin", &["textfile_to_v07t=ddp/CDTEXT.BIN"], &disc);
    let mut expected_sheet =
        vec!["Album Title         = Corpus Sessions".to_owned(), format!("Artist Name         = {performer}")];
    for (i, title) in titles.iter().enumerate() {
        expected_sheet.push(format!("Track {:02} Title      = {title}", i + 1));
        expected_sheet.push(format!("Track {:02} Artist     = {performer}", i + 1));
    }
    let read: Vec<&str> = sheet
        .lines()
        .filter(|l| l.starts_with("Album Title") || l.starts_with("Artist Name") || l.starts_with("Track "))
        .collect();
    assert_eq!(read, expected_sheet, "{sheet}");

    // The report gives the same running order.
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let layout = &report["discs"][0]["layout"];
    assert_eq!(layout["lead_out_frame"], lead_out);
    for (i, start) in starts.iter().enumerate() {
        assert_eq!(layout["tracks"][i]["start_frame"], *start);
    }
}

#[test]
fn the_album_is_delivered_as_a_disc_and_gapless_joins_sample_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    master(&manifest(dir.path(), None), &out);
    check_disc(&out, 150);
    // A lost file of the set is made again, the same bytes.
    let image = out.join("disc/ddp/IMAGE.DAT");
    let bytes = std::fs::read(&image).unwrap();
    std::fs::remove_file(&image).unwrap();
    master(&manifest(dir.path(), None), &out);
    assert!(std::fs::read(&image).unwrap() == bytes, "the image is made again, bit-identical");
    // The same album without gaps: the tracks are not rendered again, the
    // disc is made anew with the tracks joined.
    master(&manifest(dir.path(), Some(0.0)), &out);
    check_disc(&out, 0);
}
