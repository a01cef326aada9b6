//! Arbitrary input to everything that reads what a tenant sends: the
//! manifest parser and checks, the probe and the decoder. Whatever the
//! bytes, each must return (no panic, no hang) and, when it refuses, say
//! where: a field path or a line for a manifest; a time, or what is wrong
//! with the file, for audio.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use lacquer_pipelines::decode::{AudioReader, probe};
use lacquer_pipelines::dsp::AudioBlock;
use lacquer_pipelines::manifest::{self, StorageRoot};
use proptest::prelude::*;

fn example(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/album-small").join(name)).unwrap()
}

fn data(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)).unwrap()
}

/// Runs `work` on its own thread and fails if it takes longer than any
/// input should (the decoder of a damaged file must not spin).
fn bounded<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(work());
    });
    match receiver.recv_timeout(Duration::from_secs(20)) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what} did not return within 20 s"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Flip { at: usize, mask: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Delete { at: usize, length: usize },
    Truncate { at: usize },
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(at, mask)| Edit::Flip { at, mask }),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        (any::<usize>(), 1usize..64).prop_map(|(at, length)| Edit::Delete { at, length }),
        any::<usize>().prop_map(|at| Edit::Truncate { at }),
    ];
    proptest::collection::vec(edit, 1..8)
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let length = bytes.len().max(1);
        match edit {
            Edit::Flip { at, mask } => {
                if let Some(b) = bytes.get_mut(at % length) {
                    *b ^= mask;
                }
            }
            Edit::Insert { at, bytes: new } => {
                let at = (at % length).min(bytes.len());
                bytes.splice(at..at, new.iter().copied());
            }
            Edit::Delete { at, length: n } => {
                let at = (at % length).min(bytes.len());
                let end = (at + n).min(bytes.len());
                bytes.drain(at..end);
            }
            Edit::Truncate { at } => bytes.truncate(at % length),
        }
    }
    bytes
}

/// Parses and checks manifest bytes as `lacquer validate` does; every
/// problem must have a place.
fn check_manifest(bytes: &[u8]) {
    let base = StorageRoot::Local { dir: PathBuf::from("/albums/fuzz") };
    let problems = match manifest::manifest_text(bytes).and_then(|text| manifest::check(text, &base, None)) {
        Err(error) => error.problems,
        Ok(checked) => checked.problems,
    };
    for problem in problems {
        assert!(!problem.path.is_empty() || problem.line.is_some(), "a problem without a place: {problem}");
        assert!(!problem.message.is_empty());
    }
}

/// Probes and decodes audio bytes to the end; refusals say something.
fn read_audio(bytes: Vec<u8>, extension: &'static str) {
    let length = bytes.len() as u64;
    if let Err(error) = probe(Cursor::new(bytes.clone()), length, Some(extension)) {
        assert!(!error.to_string().is_empty());
    }
    match AudioReader::open(Cursor::new(bytes), length, Some(extension)) {
        Err(error) => assert!(!error.to_string().is_empty()),
        Ok(mut reader) => {
            let mut block = AudioBlock::new(reader.info().channels, 4096);
            loop {
                match reader.read(&mut block, 4096) {
                    Ok(0) => break,
                    Ok(_) => assert!(block.channels().all(|c| c.iter().all(|s| s.is_finite()))),
                    Err(error) => {
                        assert!(!error.to_string().is_empty());
                        break;
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_as_a_manifest(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        bounded("the manifest check", move || check_manifest(&bytes));
    }

    #[test]
    fn the_example_manifest_mutated(edits in edits()) {
        let bytes = apply(example("album.yaml"), &edits);
        bounded("the manifest check", move || check_manifest(&bytes));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_as_audio(bytes in proptest::collection::vec(any::<u8>(), 0..4096), extension in prop::sample::select(vec!["wav", "flac", "ogg", "mp3", "aiff", "m4a"])) {
        bounded("decoding", move || read_audio(bytes, extension));
    }

    #[test]
    fn real_audio_files_mutated(
        edits in edits(),
        file in prop::sample::select(vec![
            ("reference-24bit.wav", "wav"),
            ("reference-24bit.flac", "flac"),
            ("sines-4s.ogg", "ogg"),
            ("stereo.mp3", "mp3"),
            ("mono-16bit.aiff", "aiff"),
            ("stereo-alac.m4a", "m4a"),
        ]),
    ) {
        let bytes = apply(data(file.0), &edits);
        bounded("decoding", move || read_audio(bytes, file.1));
    }

    #[test]
    fn an_example_stem_mutated(edits in edits()) {
        let bytes = apply(example("02-maple-leaf/clarinet.flac"), &edits);
        bounded("decoding", move || read_audio(bytes, "flac"));
    }
}
