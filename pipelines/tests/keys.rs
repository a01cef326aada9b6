//! Every setting reaches exactly the task keys of the stages that read it.
//!
//! Each field of the example manifest (all of them, defaults included) is
//! changed in turn, and the keys of every mix, master and finalize task
//! are compared with those before: the tasks whose key changed must be
//! exactly the tasks that read the field (the table in `readers`), so a
//! cached rerun can never keep a file rendered with an older setting —
//! nor re-render what a setting does not touch. Inputs that come from
//! earlier tasks (a mix's hash, the drive, the album pass's correction)
//! are held fixed: they are keyed as what they are.

use std::collections::BTreeSet;

use lacquer_pipelines::album::Correction;
use lacquer_pipelines::manifest::{self, Manifest};
use lacquer_pipelines::tasks::{AlbumTasks, MasterResult, MixResult};
use serde_norway::Value;

fn example() -> Manifest {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/album-small/album.yaml")).unwrap();
    let mut manifest = manifest::parse(&text).unwrap().0;
    // With the codec check on (the example album has it off), so its
    // fields are changed too; the CD is not for streaming.
    manifest.matching.codec_check = vec![manifest::CodecSpec { codec: manifest::Codec::Aac, bitrate_kbps: Some(256) }];
    manifest.matching.codec_ceiling_dbtp = Some(-1.0);
    if let Some(cd) = manifest.deliverables.as_mut().and_then(|d| d.iter_mut().find(|d| d.name == "cd")) {
        cd.streaming = Some(false);
    }
    manifest
}

fn mix_result() -> MixResult {
    serde_json::from_str(
        r#"{"report":null,"file":{"Given":{"key":"m.wav","blake3":"aa"}},"integrated_lufs":-20.0,"frames":441000,"trim_frames":0}"#,
    )
    .unwrap()
}

fn master_result() -> MasterResult {
    let analysis = r#"{"sample_rate_hz":44100,"channels":2,"frames":441000,"integrated_lufs":-15.0,"loudness_range_lu":5.0,
        "true_peak_dbtp":-1.0,"true_peak_bs1770_dbtp":-1.05,"sample_peak_dbfs":-1.2,"plr_db":14.0,"max_short_term_lufs":-12.0,"short_term_lufs":[],
        "block_energies":[],"band_levels_db":[],"warmth_db":10.0,"tilt_db_per_octave":-1.0,"width_db":-9.0}"#;
    serde_json::from_str(&format!(
        r#"{{"report":{{"analysis":{analysis},"input_gain_db":2.0,"limiter_gain_reduction_db":1.0}},
            "file":{{"path":"master/x.wav","blake3":"bb","size_bytes":100}}}}"#
    ))
    .unwrap()
}

fn correction() -> Correction {
    serde_json::from_str(
        r#"{"gain_db":1.0,"target_lufs":-14.0,"curve_db":[],"max_correction_db":4.0,"master_balance_db":[],"master_lra_lu":5.0,"expected_limiting_db":0.5,"warnings":[]}"#,
    )
    .unwrap()
}

type Task = (&'static str, usize);

/// Every task's key, by stage and track.
fn keys(manifest: &Manifest) -> Vec<(Task, String)> {
    let tasks = AlbumTasks::new(manifest);
    let (mix, master, correction) = (mix_result(), master_result(), correction());
    let mut keys = Vec::new();
    for (t, track) in manifest.tracks.iter().enumerate() {
        if let Some(stems) = &track.stems {
            let hashes: Vec<String> = (0..stems.len()).map(|s| format!("{s:064}")).collect();
            keys.push((("mix", t), tasks.mix_task(t, &hashes)));
        }
        keys.push((("master", t), tasks.master_task(t, &mix, 1.5)));
        keys.push((("finalize", t), tasks.finalize_task(t, &master, &correction)));
    }
    keys
}

fn changed(before: &[(Task, String)], after: &[(Task, String)]) -> BTreeSet<Task> {
    before.iter().zip(after).filter(|(b, a)| b.1 != a.1).map(|(b, _)| b.0).collect()
}

/// The tasks that read the field at `path` (serde names, `a.b[2].c`).
fn readers(manifest: &Manifest, path: &str) -> BTreeSet<Task> {
    let tracks = manifest.tracks.len();
    let stem_tracks: Vec<usize> = (0..tracks).filter(|&t| manifest.tracks[t].stems.is_some()).collect();
    let all = |stages: &[&'static str]| -> BTreeSet<Task> {
        let mut set = BTreeSet::new();
        for &stage in stages {
            let on: Vec<usize> = if stage == "mix" { stem_tracks.clone() } else { (0..tracks).collect() };
            set.extend(on.into_iter().map(|t| (stage, t)));
        }
        set
    };
    let one = |t: usize, stages: &[&'static str]| -> BTreeSet<Task> {
        stages.iter().filter(|s| **s != "mix" || stem_tracks.contains(&t)).map(|s| (*s, t)).collect()
    };
    let field = |prefix: &str| {
        path == prefix || path.starts_with(&format!("{prefix}.")) || path.starts_with(&format!("{prefix}["))
    };
    if let Some(rest) = path.strip_prefix("tracks[") {
        let (index, rest) = rest.split_once(']').unwrap();
        let t: usize = index.parse().unwrap();
        let rest = rest.trim_start_matches('.');
        let name = rest.split(['.', '[']).next().unwrap();
        return match name {
            "id" | "title" => one(t, &["mix", "master", "finalize"]),
            "isrc" => one(t, &["master", "finalize"]),
            "stems" | "returns" | "trim_start_s" => one(t, &["mix"]),
            "fade_in_s" | "fade_out_s" => one(t, &["finalize"]),
            "master" if rest.starts_with("master.limiter") => one(t, &["master", "finalize"]),
            "master" => one(t, &["master"]),
            // Reach the master and finalize through the drive and the
            // correction (held fixed here), or through the mix's content.
            "loudness_offset_lu" | "mix_file" => BTreeSet::new(),
            other => panic!("tracks[].{other}: say which stages read it"),
        };
    }
    if field("album.title") || field("album.artist") || field("album.sample_rate") {
        return all(&["mix", "master", "finalize"]);
    }
    if field("album.label") || field("matching.true_peak_dbtp") || field("matching.max_limiter_gain_reduction_db") {
        return all(&["master", "finalize"]);
    }
    if field("matching.codec_check") || field("matching.codec_ceiling_dbtp") {
        return all(&["finalize"]);
    }
    if field("mix") {
        return all(&["mix"]);
    }
    if let Some(rest) = path.strip_prefix("master.") {
        // An album master block reaches a track without its own block of
        // the same name; the limiter is also the finalize's.
        let name = rest.split(['.', '[']).next().unwrap();
        let stages: &[&'static str] = if name == "limiter" { &["master", "finalize"] } else { &["master"] };
        return (0..tracks)
            .filter(|&t| {
                let own = manifest.tracks[t].master.as_ref().map(|m| serde_norway::to_value(m).unwrap());
                own.as_ref().and_then(|own| own.get(name)).is_none_or(Value::is_null)
            })
            .flat_map(|t| one(t, stages))
            .collect();
    }
    if field("deliverables") {
        return all(&["finalize"]);
    }
    if field("version") || field("album.upc") || field("source") || field("output") || field("matching") {
        return BTreeSet::new();
    }
    panic!("{path}: say which stages read it")
}

/// Every leaf of `value` with its path.
fn leaves(value: &Value, path: String, out: &mut Vec<String>) {
    match value {
        Value::Mapping(map) => {
            for (key, item) in map {
                let key = key.as_str().unwrap();
                leaves(item, if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }, out);
            }
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter().enumerate() {
                leaves(item, format!("{path}[{index}]"), out);
            }
        }
        _ => out.push(path),
    }
}

fn at<'v>(value: &'v mut Value, path: &str) -> &'v mut Value {
    let mut node = value;
    for part in path.split('.') {
        let (key, indices) = part.split_once('[').map_or((part, ""), |(k, rest)| (k, rest));
        if !key.is_empty() {
            node = node.get_mut(key).unwrap();
        }
        for index in indices.split('[').filter(|i| !i.is_empty()) {
            node = node.get_mut(index.trim_end_matches(']').parse::<usize>().unwrap()).unwrap();
        }
    }
    node
}

/// `value` changed as little as its type allows.
fn nudged(value: &Value) -> Option<Value> {
    Some(match value {
        Value::Bool(b) => Value::Bool(!b),
        Value::Number(n) if n.is_u64() => Value::from(n.as_u64().unwrap() + 1),
        Value::Number(n) if n.is_i64() => Value::from(n.as_i64().unwrap() - 1),
        Value::Number(n) => Value::from(n.as_f64().unwrap() + 0.125),
        Value::String(s) => Value::from(format!("{s}x")),
        _ => return None,
    })
}

#[test]
fn each_setting_changes_the_keys_of_exactly_the_tasks_that_read_it() {
    let manifest = example();
    let before = keys(&manifest);
    let value = serde_norway::to_value(&manifest).unwrap();
    let mut paths = Vec::new();
    leaves(&value, String::new(), &mut paths);
    let mut checked = 0;
    for path in &paths {
        let mut mutated = value.clone();
        let leaf = at(&mut mutated, path);
        let Some(new) = nudged(leaf) else { continue };
        *leaf = new;
        // A change the types refuse (an enum's name, a rate as text) is
        // no setting at all.
        let Ok(changed_manifest) = serde_norway::from_value::<Manifest>(mutated) else { continue };
        let after = keys(&changed_manifest);
        assert_eq!(changed(&before, &after), readers(&manifest, path), "changing {path}");
        checked += 1;
    }
    assert!(checked > 150, "only {checked} fields were changed");
}

#[test]
fn the_track_count_reaches_every_master_and_finalize_but_no_mix() {
    let manifest = example();
    let before = keys(&manifest);
    let mut longer = manifest.clone();
    let mut extra = longer.tracks[0].clone();
    extra.id = "04-extra".into();
    longer.tracks.push(extra);
    let after = keys(&longer);
    let changed = changed(&before, &after[..before.len()]);
    let expected: BTreeSet<Task> = (0..3).flat_map(|t| [("master", t), ("finalize", t)]).collect();
    assert_eq!(changed, expected, "TRACKTOTAL is written into every master and deliverable");
}
