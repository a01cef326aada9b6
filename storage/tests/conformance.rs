//! One conformance suite for every storage backend: the local filesystem,
//! and S3 against a real S3-compatible server (s3s-fs) on loopback.

use std::io::{Read, Seek, SeekFrom};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use lacquer_storage::testing::S3Server;
use lacquer_storage::{BlockingReader, LocalStorage, S3Credentials, S3Storage, Storage, StorageError, WriteMode};
use tokio::io::{AsyncRead, ReadBuf};

/// Deterministic, non-repeating test content.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut state = 0x9E37_79B9_u32 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect()
}

/// A body that yields `total` bytes in `chunk`-sized reads, pausing between
/// them, and optionally fails after `fail_after` bytes.
struct SlowBody {
    data: Vec<u8>,
    position: usize,
    chunk: usize,
    pause: Duration,
    fail_after: Option<usize>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl SlowBody {
    fn new(data: Vec<u8>, chunk: usize, pause: Duration) -> Self {
        Self { data, position: 0, chunk, pause, fail_after: None, sleep: None }
    }
}

impl AsyncRead for SlowBody {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if let Some(sleep) = self.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        if self.fail_after.is_some_and(|limit| self.position >= limit) {
            return Poll::Ready(Err(std::io::Error::other("the producer failed")));
        }
        let end = (self.position + self.chunk).min(self.data.len()).min(self.position + buf.remaining());
        let start = self.position;
        buf.put_slice(&self.data[start..end]);
        self.position = end;
        if !self.pause.is_zero() {
            self.sleep = Some(Box::pin(tokio::time::sleep(self.pause)));
        }
        Poll::Ready(Ok(()))
    }
}

async fn suite(storage: Arc<dyn Storage>) {
    round_trip(storage.as_ref()).await;
    overwrite_and_create_new(storage.as_ref()).await;
    missing_objects(storage.as_ref()).await;
    listing(storage.as_ref()).await;
    ranges(storage.as_ref()).await;
    large_streamed_write(storage.as_ref()).await;
    readers_never_see_a_partial_object(storage.clone()).await;
    a_failed_write_publishes_nothing(storage.as_ref()).await;
    invalid_keys(storage.as_ref()).await;
    blocking_reader(storage.clone()).await;
}

async fn round_trip(storage: &dyn Storage) {
    let data = pattern(70_001, 1);
    let meta = storage.write_bytes("a/round-trip.bin", Bytes::from(data.clone()), WriteMode::Overwrite).await.unwrap();
    assert_eq!(meta.size_bytes, 70_001);
    assert_eq!(storage.head("a/round-trip.bin").await.unwrap().size_bytes, 70_001);
    assert_eq!(storage.read_to_bytes("a/round-trip.bin").await.unwrap(), data);
    storage.write_bytes("a/empty.bin", Bytes::new(), WriteMode::Overwrite).await.unwrap();
    assert_eq!(storage.head("a/empty.bin").await.unwrap().size_bytes, 0);
    assert!(storage.read_to_bytes("a/empty.bin").await.unwrap().is_empty());
}

async fn overwrite_and_create_new(storage: &dyn Storage) {
    storage.write_bytes("b/x.txt", Bytes::from_static(b"first"), WriteMode::Overwrite).await.unwrap();
    storage.write_bytes("b/x.txt", Bytes::from_static(b"second"), WriteMode::Overwrite).await.unwrap();
    assert_eq!(storage.read_to_bytes("b/x.txt").await.unwrap(), &b"second"[..]);

    let error = storage.write_bytes("b/x.txt", Bytes::from_static(b"third"), WriteMode::CreateNew).await.unwrap_err();
    assert!(matches!(error, StorageError::AlreadyExists { .. }), "{error}");
    assert!(error.to_string().contains("b/x.txt"), "{error}");
    assert_eq!(storage.read_to_bytes("b/x.txt").await.unwrap(), &b"second"[..], "create-new must not replace");

    storage.write_bytes("b/new.txt", Bytes::from_static(b"fresh"), WriteMode::CreateNew).await.unwrap();
    assert_eq!(storage.read_to_bytes("b/new.txt").await.unwrap(), &b"fresh"[..]);
}

async fn missing_objects(storage: &dyn Storage) {
    for result in
        [storage.head("nope/missing.wav").await.map(|_| ()), storage.read("nope/missing.wav").await.map(|_| ())]
    {
        let error = result.unwrap_err();
        assert!(matches!(error, StorageError::NotFound { .. }), "{error}");
        assert!(error.to_string().contains("nope/missing.wav"), "names the location: {error}");
        assert!(!error.is_retryable());
    }
    storage.write_bytes("c/gone.txt", Bytes::from_static(b"x"), WriteMode::Overwrite).await.unwrap();
    storage.delete("c/gone.txt").await.unwrap();
    assert!(matches!(storage.head("c/gone.txt").await, Err(StorageError::NotFound { .. })));
    storage.delete("c/gone.txt").await.expect("deleting a missing object is fine");
}

async fn listing(storage: &dyn Storage) {
    for key in ["list/b.wav", "list/a.wav", "list/sub/c.wav", "listing-other.txt", "elsewhere/d.wav"] {
        storage.write_bytes(key, Bytes::from(key.as_bytes().to_vec()), WriteMode::Overwrite).await.unwrap();
    }
    let keys = |list: Vec<lacquer_storage::ObjectMeta>| list.into_iter().map(|m| m.key).collect::<Vec<_>>();
    assert_eq!(keys(storage.list("list/").await.unwrap()), ["list/a.wav", "list/b.wav", "list/sub/c.wav"]);
    assert_eq!(
        keys(storage.list("list").await.unwrap()),
        ["list/a.wav", "list/b.wav", "list/sub/c.wav", "listing-other.txt"]
    );
    assert_eq!(keys(storage.list("list/sub/c").await.unwrap()), ["list/sub/c.wav"]);
    assert!(storage.list("no-such-prefix/").await.unwrap().is_empty());
    let sizes: Vec<u64> = storage.list("list/").await.unwrap().iter().map(|m| m.size_bytes).collect();
    assert_eq!(sizes, [10, 10, 14]);
}

async fn ranges(storage: &dyn Storage) {
    let data = pattern(1000, 2);
    storage.write_bytes("r/range.bin", Bytes::from(data.clone()), WriteMode::Overwrite).await.unwrap();
    assert_eq!(storage.read_range("r/range.bin", 10..20).await.unwrap(), &data[10..20]);
    assert_eq!(storage.read_range("r/range.bin", 990..5000).await.unwrap(), &data[990..], "end is clamped");
    assert!(storage.read_range("r/range.bin", 5..5).await.unwrap().is_empty());
    let error = storage.read_range("r/range.bin", 1000..1010).await.unwrap_err();
    assert!(matches!(error, StorageError::InvalidRange { size_bytes: 1000, .. }), "{error}");
}

/// 12 MiB streamed in odd-sized reads: above the S3 multipart threshold
/// used by these tests (6 MiB, 5 MiB parts), so it goes up in three parts.
async fn large_streamed_write(storage: &dyn Storage) {
    let data = pattern(12 * 1024 * 1024 + 77, 3);
    let body = SlowBody::new(data.clone(), 100_003, Duration::ZERO);
    let meta = storage.write("big/large.bin", Box::pin(body), WriteMode::CreateNew).await.unwrap();
    assert_eq!(meta.size_bytes, data.len() as u64);
    let back = storage.read_to_bytes("big/large.bin").await.unwrap();
    assert!(back == data, "large object differs after the round trip");
    let error = storage
        .write(
            "big/large.bin",
            Box::pin(SlowBody::new(pattern(7 * 1024 * 1024, 4), 1 << 20, Duration::ZERO)),
            WriteMode::CreateNew,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, StorageError::AlreadyExists { .. }), "multipart create-new: {error}");
    assert!(storage.read_to_bytes("big/large.bin").await.unwrap() == data);
}

async fn readers_never_see_a_partial_object(storage: Arc<dyn Storage>) {
    let data = pattern(300_000, 5);
    let expected = data.len() as u64;
    let writer = {
        let storage = storage.clone();
        tokio::spawn(async move {
            let body = SlowBody::new(data, 30_000, Duration::from_millis(20));
            storage.write("atomic/slow.bin", Box::pin(body), WriteMode::Overwrite).await.unwrap();
        })
    };
    let mut observations = 0;
    while !writer.is_finished() {
        match storage.head("atomic/slow.bin").await {
            Ok(meta) => assert_eq!(meta.size_bytes, expected, "a reader saw a partial object"),
            Err(StorageError::NotFound { .. }) => {}
            Err(other) => panic!("unexpected error while polling: {other}"),
        }
        assert!(
            storage.list("atomic/").await.unwrap().iter().all(|m| m.size_bytes == expected),
            "a listing showed a partial object"
        );
        observations += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    writer.await.unwrap();
    assert!(observations > 5, "the write was too quick to observe ({observations} looks)");
    assert_eq!(storage.head("atomic/slow.bin").await.unwrap().size_bytes, expected);
}

async fn a_failed_write_publishes_nothing(storage: &dyn Storage) {
    let mut body = SlowBody::new(pattern(200_000, 6), 50_000, Duration::ZERO);
    body.fail_after = Some(100_000);
    let error = storage.write("failed/partial.bin", Box::pin(body), WriteMode::Overwrite).await.unwrap_err();
    assert!(error.to_string().contains("failed/partial.bin"), "{error}");
    assert!(matches!(storage.head("failed/partial.bin").await, Err(StorageError::NotFound { .. })));
    assert!(storage.list("failed/").await.unwrap().is_empty(), "no temporary object may be listed");
}

async fn invalid_keys(storage: &dyn Storage) {
    for key in ["../escape.wav", "/absolute.wav", "a//b.wav", ""] {
        let error = storage.write_bytes(key, Bytes::from_static(b"x"), WriteMode::Overwrite).await.unwrap_err();
        assert!(matches!(error, StorageError::InvalidKey { .. }), "{key:?}: {error}");
        assert!(matches!(storage.head(key).await, Err(StorageError::InvalidKey { .. })));
    }
}

async fn blocking_reader(storage: Arc<dyn Storage>) {
    let data = pattern(600_000, 7);
    storage.write_bytes("blocking/file.bin", Bytes::from(data.clone()), WriteMode::Overwrite).await.unwrap();
    let mut reader = BlockingReader::open(storage, "blocking/file.bin").await.unwrap();
    assert_eq!(reader.size_bytes(), 600_000);
    tokio::task::spawn_blocking(move || {
        let mut head = [0u8; 1000];
        reader.read_exact(&mut head).unwrap();
        assert_eq!(&head[..], &data[..1000]);
        reader.seek(SeekFrom::End(-500)).unwrap();
        let mut tail = Vec::new();
        reader.read_to_end(&mut tail).unwrap();
        assert_eq!(tail, &data[599_500..]);
        reader.seek(SeekFrom::Start(262_000)).unwrap();
        let mut across = vec![0u8; 10_000];
        reader.read_exact(&mut across).unwrap();
        assert_eq!(across, &data[262_000..272_000], "a read across chunk boundaries");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    suite(Arc::new(LocalStorage::new(dir.path().join("root")))).await;
    let leftovers: Vec<_> = walk(dir.path()).into_iter().filter(|p| p.contains(".lacquer-tmp-")).collect();
    assert!(leftovers.is_empty(), "temporary files left behind: {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_files_are_what_they_say_and_stay_inside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("stems/folder.wav")).unwrap();
    std::fs::write(root.join("stems/inside.wav"), b"inside").unwrap();
    std::fs::write(dir.path().join("secret.wav"), b"secret").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.wav"), root.join("stems/escape.wav")).unwrap();
    std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
    std::os::unix::fs::symlink(root.join("stems/inside.wav"), root.join("stems/alias.wav")).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(root.join("stems/pipe.wav")).status().unwrap().success());
    let storage = LocalStorage::new(&root);

    let error = storage.head("stems/folder.wav").await.unwrap_err();
    assert!(error.to_string().ends_with("stems/folder.wav is a folder, not a file"), "{error}");
    // A named pipe is refused without opening it (opening would block).
    let error = storage.read("stems/pipe.wav").await.map(|_| ()).unwrap_err();
    assert!(error.to_string().ends_with("stems/pipe.wav is a named pipe, not a file"), "{error}");
    for key in ["stems/escape.wav", "up/secret.wav"] {
        let error = storage.read_to_bytes(key).await.unwrap_err();
        assert!(matches!(error, StorageError::OutsideRoot { .. }), "{key}: {error}");
        assert!(error.to_string().contains("secret.wav") && error.to_string().contains("outside"), "{error}");
    }
    // A link that stays inside the root is followed.
    assert_eq!(storage.read_to_bytes("stems/alias.wav").await.unwrap(), &b"inside"[..]);
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path.display().to_string());
        }
    }
    found
}

fn small_parts(mut config: lacquer_storage::S3Config) -> lacquer_storage::S3Config {
    config.multipart_threshold_bytes = 6 * 1024 * 1024;
    config.part_size_bytes = 5 * 1024 * 1024;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_backend_conforms() {
    let server = S3Server::start(&["masters"]).expect("start the S3-compatible test server");
    let storage = S3Storage::connect(small_parts(server.config("masters", "label-a/album-1/"))).await;
    suite(Arc::new(storage)).await;
    // The prefix is honoured: everything landed under it in the bucket.
    assert!(server.root().join("masters/label-a/album-1/a/round-trip.bin").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_errors_say_what_and_where() {
    let server = S3Server::start(&["present"]).expect("start the S3-compatible test server");

    let missing = S3Storage::connect(server.config("absent-bucket", "")).await;
    let error = missing.head("x.wav").await.unwrap_err();
    assert!(matches!(error, StorageError::BucketNotFound { ref bucket, .. } if bucket == "absent-bucket"), "{error}");
    assert!(error.to_string().contains("absent-bucket"), "{error}");
    // (s3s-fs creates a bucket's folder on a PUT, so writes are not checked here.)
    let error = missing.list("").await.unwrap_err();
    assert!(matches!(error, StorageError::BucketNotFound { .. }), "{error}");

    let mut config = server.config("present", "");
    config.credentials = Some(S3Credentials {
        access_key_id: "someone-else".into(),
        secret_access_key: "wrong-secret".into(),
        session_token: None,
    });
    let intruder = S3Storage::connect(config).await;
    let error = intruder.write_bytes("x.wav", Bytes::from_static(b"x"), WriteMode::Overwrite).await.unwrap_err();
    assert!(matches!(error, StorageError::BadCredentials { .. } | StorageError::AccessDenied { .. }), "{error}");
    assert!(error.to_string().contains("s3://present/x.wav"), "{error}");
    let error = intruder.head("x.wav").await.unwrap_err();
    assert!(matches!(error, StorageError::BadCredentials { .. } | StorageError::AccessDenied { .. }), "{error}");

    let mut config = server.config("present", "");
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    config.endpoint_url = Some(format!("http://127.0.0.1:{closed_port}"));
    config.max_attempts = 2;
    let unreachable = S3Storage::connect(config).await;
    let error = unreachable.head("x.wav").await.unwrap_err();
    assert!(matches!(error, StorageError::Unreachable { .. }), "{error}");
    assert!(error.is_retryable());
    assert!(error.to_string().contains(&closed_port.to_string()), "names the endpoint: {error}");
}
