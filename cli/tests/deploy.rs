//! The deployment files: every kustomize overlay renders, every rendered
//! object passes `kubernetes-validate --strict`, every environment
//! variable the manifests set is one the container's binary reads (as its
//! `--help` lists them), and the Dockerfile parses and keeps its promises
//! (locked build, non-root run stage). `scripts/setup` installs kubectl
//! (when missing) and the Python tools into target/python.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python_tool(name: &str) -> PathBuf {
    let tool = repository().join("target/python/bin").join(name);
    assert!(tool.exists(), "{} is missing: run scripts/setup", tool.display());
    tool
}

/// Everything an overlay renders to, as YAML documents.
fn render(dir: &Path) -> (String, Vec<serde_json::Value>) {
    let out = Command::new("kubectl").arg("kustomize").arg(dir).output().expect("kubectl (scripts/setup installs it)");
    assert!(out.status.success(), "{}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let objects = text
        .split("\n---\n")
        .map(|doc| serde_norway::from_str::<serde_json::Value>(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    (text, objects)
}

/// The rendered sets: every overlay, and the example Job.
fn rendered_dirs() -> Vec<PathBuf> {
    let k8s = repository().join("deploy/k8s");
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(k8s.join("overlays")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs.push(k8s.join("examples"));
    dirs
}

/// Kinds whose schemas kubernetes-validate does not ship (operators' custom
/// resources); they are rendered, and their apiVersion and kind checked.
const CUSTOM_KINDS: &[(&str, &str)] = &[
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
];

#[test]
fn every_overlay_renders_and_passes_strict_schema_validation() {
    let validate = python_tool("kubernetes-validate");
    let dir = tempfile::tempdir().unwrap();
    let mut seen_kinds = BTreeSet::new();
    for overlay in rendered_dirs() {
        let (text, objects) = render(&overlay);
        let name = overlay.file_name().unwrap().to_string_lossy().into_owned();
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, &text).unwrap();
        let out = Command::new(&validate).args(["--strict", "--no-warn"]).arg(&file).output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {said}");
        // With warnings: only the custom kinds may lack a schema.
        let out = Command::new(&validate).arg("--strict").arg(&file).output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        for line in said.lines().filter(|l| !l.starts_with("INFO")) {
            assert!(
                CUSTOM_KINDS.iter().any(|(api, kind)| line.contains(&format!("kind {kind} with api version {api}"))),
                "{name}: {line}"
            );
        }
        for object in &objects {
            seen_kinds.insert(object["kind"].as_str().unwrap().to_owned());
        }
    }
    for kind in [
        "StatefulSet",
        "Deployment",
        "HorizontalPodAutoscaler",
        "ScaledObject",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ConfigMap",
        "Secret",
        "Service",
        "ServiceMonitor",
        "Job",
    ] {
        assert!(seen_kinds.contains(kind), "no {kind} in any overlay: {seen_kinds:?}");
    }
}

/// The environment variables a binary reads, as its `--help` lists them.
fn reads(command: &[String]) -> BTreeSet<String> {
    let binary = match command[0].as_str() {
        "lacquer" => env!("CARGO_BIN_EXE_lacquer"),
        "lacquer-coordinator" => env!("CARGO_BIN_EXE_lacquer-coordinator"),
        "lacquer-worker" => env!("CARGO_BIN_EXE_lacquer-worker"),
        other => panic!("a container runs {other}, not one of lacquer's binaries"),
    };
    // `lacquer` reads per subcommand.
    let subcommand = if command[0] == "lacquer" { command.get(1).cloned() } else { None };
    let out = Command::new(binary).args(&subcommand).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let mut names: BTreeSet<String> = help
        .split("[env:")
        .skip(1)
        .map(|rest| {
            rest.trim_start()
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect()
        })
        .collect();
    // The AWS SDK's credential chain, which every binary that opens S3 uses.
    if command[0] != "lacquer" || subcommand.as_deref() != Some("submit") {
        names.extend(["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"].map(String::from));
    }
    names
}

#[test]
fn manifests_set_only_variables_their_binaries_read() {
    for overlay in rendered_dirs() {
        let (_, objects) = render(&overlay);
        let keys_of = |kind: &str, name: &str| -> Vec<String> {
            objects
                .iter()
                .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
                .map(|o| {
                    let data = if kind == "Secret" { &o["stringData"] } else { &o["data"] };
                    data.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
                })
                .unwrap_or_else(|| panic!("{}: envFrom names a missing {kind} {name}", overlay.display()))
        };
        let mut checked = 0;
        for object in &objects {
            let spec = match object["kind"].as_str().unwrap() {
                "StatefulSet" | "Deployment" | "Job" => &object["spec"]["template"]["spec"],
                _ => continue,
            };
            for container in spec["containers"].as_array().unwrap() {
                let command: Vec<String> =
                    container["command"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
                let args: Vec<String> = container["args"]
                    .as_array()
                    .map(|a| a.iter().map(|c| c.as_str().unwrap().to_owned()).collect())
                    .unwrap_or_default();
                let invocation: Vec<String> = command.iter().chain(&args).cloned().collect();
                let readable = reads(&invocation);
                let mut set: BTreeMap<String, String> = BTreeMap::new();
                for env in container["env"].as_array().into_iter().flatten() {
                    set.insert(env["name"].as_str().unwrap().to_owned(), "env".into());
                }
                for source in container["envFrom"].as_array().into_iter().flatten() {
                    let (kind, name) = if let Some(name) = source["configMapRef"]["name"].as_str() {
                        ("ConfigMap", name)
                    } else {
                        ("Secret", source["secretRef"]["name"].as_str().unwrap())
                    };
                    for key in keys_of(kind, name) {
                        set.insert(key, format!("{kind} {name}"));
                    }
                }
                for (variable, from) in &set {
                    assert!(
                        readable.contains(variable),
                        "{}: {} sets {variable} (from {from}), which {} does not read; it reads {readable:?}",
                        overlay.display(),
                        object["metadata"]["name"],
                        invocation.join(" ")
                    );
                }
                checked += set.len();
            }
        }
        assert!(checked >= 2, "{}: only {checked} variables checked", overlay.display());
    }
    // The example's album is the example album.
    let copy = std::fs::read_to_string(repository().join("deploy/k8s/examples/album.yaml")).unwrap();
    let original = std::fs::read_to_string(repository().join("examples/album-small/album.yaml")).unwrap();
    assert_eq!(copy, original, "deploy/k8s/examples/album.yaml must stay a copy of the example album's manifest");
}

#[test]
fn the_dockerfile_parses_and_builds_locked_and_runs_unprivileged() {
    let python = python_tool("python");
    let script = r#"
import json, sys
from dockerfile_parse import DockerfileParser
parser = DockerfileParser(path=sys.argv[1])
print(json.dumps({"structure": parser.structure, "baseimage": parser.baseimage}))
"#;
    let dockerfile = repository().join("deploy/docker/Dockerfile");
    let out = Command::new(python).args(["-c", script]).arg(&dockerfile).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps: Vec<(String, String)> = parsed["structure"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["instruction"].as_str().unwrap().to_owned(), s["value"].as_str().unwrap().to_owned()))
        .collect();
    let froms: Vec<&String> = steps.iter().filter(|(i, _)| i == "FROM").map(|(_, v)| v).collect();
    assert_eq!(froms.len(), 2, "a build stage and a run stage: {froms:?}");
    assert!(froms.iter().all(|f| f.split_whitespace().next().unwrap().contains(':')), "pinned tags: {froms:?}");
    let builds: Vec<&String> =
        steps.iter().filter(|(i, v)| i == "RUN" && v.contains("cargo build")).map(|(_, v)| v).collect();
    assert!(builds.iter().all(|b| b.contains("--locked")) && !builds.is_empty(), "{builds:?}");
    let last_from = steps.iter().rposition(|(i, _)| i == "FROM").unwrap();
    let user = steps[last_from..].iter().rev().find(|(i, _)| i == "USER").map(|(_, v)| v.as_str());
    assert!(user.is_some_and(|u| !u.starts_with("0") && !u.starts_with("root")), "the run stage's user: {user:?}");
    let copied = steps[last_from..].iter().any(|(i, v)| i == "COPY" && v.contains("--from=build"));
    assert!(copied, "the run stage takes only the built binaries");
    // The binaries the manifests run are the ones the image installs.
    let install = builds.iter().find(|b| b.contains("install")).unwrap();
    for binary in ["lacquer ", "lacquer-coordinator", "lacquer-worker"] {
        assert!(install.contains(&format!("target/release/{binary}")), "{install}");
    }
    let ignore = std::fs::read_to_string(repository().join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "target/"), "the build context leaves out target/");
}

/// The runbook's local section: `deploy/local/run` starts s3s-fs, the
/// coordinator and two workers as processes and masters the example album
/// through them (here with this build's binaries).
#[test]
fn the_local_topology_script_masters_the_example_album() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_lacquer")).parent().unwrap();
    let out = Command::new(repository().join("deploy/local/run")).env("LACQUER_BIN_DIR", bin_dir).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("succeeded  Corpus Sessions  11/11 tasks"), "{said}");
    let work = said
        .lines()
        .find_map(|l| l.strip_prefix("run: everything under "))
        .map(PathBuf::from)
        .expect("the script names its folder");
    let delivered = work.join("s3/label/masters");
    for deliverable in ["cd/01-01-chorale-66.wav", "hires/02-02-maple-leaf.wav", "lossless/03-03-tears-ballad.flac"] {
        assert!(delivered.join(deliverable).is_file(), "{deliverable} missing: {said}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["tracks"].as_array().unwrap().len(), 3);
    std::fs::remove_dir_all(&work).unwrap();
}

/// Every setting of the two server binaries can come from the environment:
/// each option of `--help` names its variable.
#[test]
fn every_server_option_has_an_environment_variable() {
    for binary in [env!("CARGO_BIN_EXE_lacquer-coordinator"), env!("CARGO_BIN_EXE_lacquer-worker")] {
        let help = String::from_utf8(Command::new(binary).arg("--help").output().unwrap().stdout).unwrap();
        // Options start a line with `--name` (or `-x, --name`); their text runs to the next option.
        let mut options: Vec<(String, String)> = Vec::new();
        for line in help.lines() {
            let trimmed = line.trim_start();
            let flag = trimmed.strip_prefix("-").and_then(|_| trimmed.split_whitespace().find(|w| w.starts_with("--")));
            match flag {
                Some(flag) => options.push((flag.trim_end_matches(',').to_owned(), line.to_owned())),
                None => {
                    if let Some((_, text)) = options.last_mut() {
                        text.push_str(line);
                    }
                }
            }
        }
        let settings: Vec<&(String, String)> =
            options.iter().filter(|(flag, _)| flag != "--help" && flag != "--version").collect();
        assert!(settings.len() >= 9, "{binary}: {options:?}");
        for (flag, text) in settings {
            assert!(text.contains("[env:"), "{binary} {flag} has no environment variable: {text}");
        }
    }
}

/// The README's quick start runs `cargo run --release -p lacquer -- master …`:
/// with three binaries in the package, only `default-run` makes that work.
#[test]
fn cargo_run_picks_the_lacquer_binary() {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    assert!(readme.contains("cargo run --release -p lacquer -- master"), "the quick start changed: update this test");
    let manifest = std::fs::read_to_string(repository().join("cli/Cargo.toml")).unwrap();
    assert!(manifest.lines().any(|l| l.trim() == "default-run = \"lacquer\""), "cli/Cargo.toml needs default-run");
}
