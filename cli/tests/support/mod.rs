//! Real processes for the tests: the coordinator and workers, started from
//! the binaries this package builds, on loopback, killed when dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// A child process whose stderr is kept (for failure messages) and which
/// is killed (SIGKILL) when dropped.
pub struct Process {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
}

impl Process {
    /// Starts `binary` with `args` and `env`, collecting its stderr.
    pub fn start(binary: &str, args: &[&str], env: &[(&str, String)]) -> Process {
        let mut child = Command::new(binary)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let kept = log.clone();
        // Always draining: the process never writes into a closed pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = kept.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Process { child, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log has a line containing `text`; returns that line.
    pub fn wait_for(&mut self, text: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(text)) {
                return line.to_owned();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("exited with {status} before saying {text:?}:\n{}", self.log());
            }
            assert!(std::time::Instant::now() < deadline, "no {text:?} within 30 s:\n{}", self.log());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the coordinator on a free loopback port; returns it and its URL.
pub fn coordinator(state_dir: &Path, extra: &[&str], env: &[(&str, String)]) -> (Process, String) {
    let mut args = vec!["--listen", "127.0.0.1:0", "--state-dir", state_dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut process = Process::start(env!("CARGO_BIN_EXE_lacquer-coordinator"), &args, env);
    let line = process.wait_for("lacquer-coordinator listening");
    let address = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("listen="))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    (process, format!("http://{address}"))
}

/// Starts a worker of `url`.
pub fn worker(url: &str, id: &str, scratch: &Path, extra: &[&str], env: &[(&str, String)]) -> Process {
    let mut args = vec!["--coordinator", url, "--worker-id", id, "--poll-ms", "50"];
    args.extend_from_slice(&["--scratch-dir", scratch.to_str().unwrap()]);
    args.extend_from_slice(extra);
    Process::start(env!("CARGO_BIN_EXE_lacquer-worker"), &args, env)
}

/// GETs `http://address/metrics` (Prometheus' text format).
pub fn scrape(address: &str) -> String {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut stream = loop {
        match std::net::TcpStream::connect(address) {
            Ok(stream) => break stream,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("no metrics at {address}: {e}"),
        }
    };
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}

/// The value of the first sample whose line starts with `series`.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}
