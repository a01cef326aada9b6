//! A real S3-compatible server for tests: `s3s-fs` (which verifies SigV4
//! signatures and supports multipart and conditional writes) serving a
//! temporary folder on a free loopback port, stopped when dropped.
//!
//! The binary is found through `LACQUER_S3S_FS`, then `PATH`, then
//! `~/.cargo/bin`; `scripts/setup` installs it.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{S3Config, S3Credentials};

pub const ACCESS_KEY_ID: &str = "lacquer-test-access";
pub const SECRET_ACCESS_KEY: &str = "lacquer-test-secret-key-0123456789";

pub struct S3Server {
    child: Option<Child>,
    address: SocketAddr,
    root: tempfile::TempDir,
}

impl S3Server {
    /// Starts the server with the given buckets already created.
    pub fn start(buckets: &[&str]) -> std::io::Result<S3Server> {
        let binary = find_binary()?;
        let root = tempfile::tempdir()?;
        for bucket in buckets {
            std::fs::create_dir_all(root.path().join(bucket))?;
        }
        let mut last_error = None;
        for _ in 0..5 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port();
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            match spawn(&binary, address, root.path()) {
                Ok(child) => return Ok(S3Server { child: Some(child), address, root }),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| std::io::Error::other("s3s-fs did not start")))
    }

    /// Stops the server (SIGKILL): an outage. Its data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data (after [`stop`](Self::stop)).
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        let binary = find_binary()?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match spawn(&binary, self.address, self.root.path()) {
                Ok(child) => {
                    self.child = Some(child);
                    return Ok(());
                }
                // The port may linger a moment after the old process.
                Err(error) if Instant::now() > deadline => return Err(error),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The folder the server stores buckets in.
    pub fn root(&self) -> &std::path::Path {
        self.root.path()
    }

    /// Copies every file under `from` into `bucket` under `prefix` (the
    /// server serves its folder as is, so this is a plain copy).
    pub fn copy_in(&self, bucket: &str, prefix: &str, from: &std::path::Path) -> std::io::Result<()> {
        let target = self.root.path().join(bucket).join(prefix);
        std::fs::create_dir_all(&target)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name();
            if entry.file_type()?.is_dir() {
                let prefix = format!("{}/{}", prefix.trim_end_matches('/'), name.to_string_lossy());
                self.copy_in(bucket, prefix.trim_start_matches('/'), &path)?;
            } else if std::fs::hard_link(&path, target.join(&name)).is_err() {
                // The server replaces objects whole, never in place, so a
                // hard link is as good as a copy where one can be made.
                std::fs::copy(&path, target.join(name))?;
            }
        }
        Ok(())
    }

    /// A configuration that reaches `bucket/prefix` on this server.
    pub fn config(&self, bucket: &str, prefix: &str) -> S3Config {
        let mut config = S3Config::new(bucket, prefix);
        config.endpoint_url = Some(self.endpoint_url());
        config.region = Some("us-east-1".to_owned());
        config.force_path_style = true;
        config.credentials = Some(S3Credentials {
            access_key_id: ACCESS_KEY_ID.to_owned(),
            secret_access_key: SECRET_ACCESS_KEY.to_owned(),
            session_token: None,
        });
        config.max_attempts = 3;
        config
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts s3s-fs serving `root` on `address`; waits until it listens.
fn spawn(binary: &std::path::Path, address: SocketAddr, root: &std::path::Path) -> std::io::Result<Child> {
    let mut child = Command::new(binary)
        .args(["--host", "127.0.0.1", "--port", &address.port().to_string()])
        .args(["--access-key", ACCESS_KEY_ID, "--secret-key", SECRET_ACCESS_KEY])
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(15);
    let error = loop {
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return Ok(child);
        }
        if let Some(status) = child.try_wait()? {
            break format!("s3s-fs exited with {status} on port {}", address.port());
        }
        if Instant::now() > deadline {
            break format!("s3s-fs did not listen on port {} within 15 s", address.port());
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    let _ = child.kill();
    let _ = child.wait();
    Err(std::io::Error::other(error))
}

fn find_binary() -> std::io::Result<PathBuf> {
    if let Some(path) = std::env::var_os("LACQUER_S3S_FS") {
        return Ok(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("s3s-fs"))
        .find(|candidate| candidate.is_file());
    let in_cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|home| home.join("bin/s3s-fs"))
        .filter(|candidate| candidate.is_file());
    on_path.or(in_cargo_home).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the S3-compatible test server `s3s-fs` is not installed: run `scripts/setup` (or set LACQUER_S3S_FS)",
        )
    })
}
