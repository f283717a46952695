//! The downloader against a small HTTP server on 127.0.0.1 that each test starts itself.
//!
//! The server answers a bounded number of connections and stops by itself after a deadline,
//! so no test can hang on it and no traffic leaves the machine.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use seqmodels_data::corpus::{download, TIME_MACHINE};
use seqmodels_data::{CorpusLocator, Error};
use sha2::{Digest, Sha256};

const GOOD: &[u8] = b"The Time Traveller (for so it will be convenient to speak of him)\n";

struct Server {
    base: String,
    requests: Arc<AtomicUsize>,
    handle: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves at most `max_connections` connections, for at most 20 seconds.
    fn start(max_connections: usize, timemachine: Option<Vec<u8>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut served = 0;
            while served < max_connections && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served += 1;
                        counter.fetch_add(1, Ordering::SeqCst);
                        let _ = handle(stream, timemachine.as_deref());
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => break,
                }
            }
        });
        Server { base, requests, handle: Some(handle) }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Wake the accept loop if it is still waiting, then join it.
        if let Some(h) = self.handle.take() {
            if !h.is_finished() {
                let _ = TcpStream::connect(self.base.trim_start_matches("http://"));
            }
            let _ = h.join();
        }
    }
}

fn handle(mut stream: TcpStream, timemachine: Option<&[u8]>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&request).lines().next().unwrap_or_default().to_owned();
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let ok = |body: &[u8], declared: usize| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"
        )
        .into_bytes()
        .into_iter()
        .chain(body.iter().copied())
        .collect::<Vec<u8>>()
    };
    let response = match path {
        "/good.txt" => ok(GOOD, GOOD.len()),
        "/wrong-hash.txt" => ok(b"not the text you expected\n", 26),
        // Promises 4096 bytes, sends 100, then closes the connection.
        "/dropped.txt" => ok(&[b'x'; 100], 4096),
        "/files/timemachine.txt" if timemachine.is_some() => {
            let t = timemachine.unwrap();
            ok(t, t.len())
        }
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found".to_vec(),
    };
    stream.write_all(&response)?;
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Both)
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn good_file_is_written_atomically() {
    let server = Server::start(1, None);
    let cache = tempfile::tempdir().unwrap();
    let dest = cache.path().join("sub").join("good.txt");
    download(&server.url("good.txt"), &dest, Some(&sha256(GOOD)), true).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), GOOD);
    assert_eq!(entries(&cache.path().join("sub")), ["good.txt"], "no temporary file is left");
}

#[test]
fn wrong_hash_leaves_nothing() {
    let server = Server::start(1, None);
    let cache = tempfile::tempdir().unwrap();
    let dest = cache.path().join("text.txt");
    let err = download(&server.url("wrong-hash.txt"), &dest, Some(&sha256(GOOD)), false).unwrap_err();
    match &err {
        Error::HashMismatch { expected, found, .. } => {
            assert_eq!(expected, &sha256(GOOD));
            assert_eq!(found, &sha256(b"not the text you expected\n"));
        }
        other => panic!("expected a hash mismatch, got {other}"),
    }
    assert!(entries(cache.path()).is_empty(), "cache must stay empty: {:?}", entries(cache.path()));
}

#[test]
fn not_found_is_an_error() {
    let server = Server::start(1, None);
    let cache = tempfile::tempdir().unwrap();
    let err = download(&server.url("nope.txt"), &cache.path().join("nope.txt"), None, false).unwrap_err();
    assert!(matches!(err, Error::Download { .. }), "{err}");
    assert!(err.to_string().contains("404"), "{err}");
    assert!(entries(cache.path()).is_empty());
}

#[test]
fn dropped_connection_is_an_error() {
    let server = Server::start(1, None);
    let cache = tempfile::tempdir().unwrap();
    let err = download(&server.url("dropped.txt"), &cache.path().join("d.txt"), None, false).unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, Error::Download { .. }), "{err}");
    assert!(entries(cache.path()).is_empty(), "{:?}", entries(cache.path()));
}

#[test]
fn refused_connection_is_an_error() {
    // Bind then drop a listener to get a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cache = tempfile::tempdir().unwrap();
    let err =
        download(&format!("http://127.0.0.1:{port}/x.txt"), &cache.path().join("x.txt"), None, false).unwrap_err();
    assert!(matches!(err, Error::Download { .. }), "{err}");
    assert!(entries(cache.path()).is_empty());
}

#[test]
fn named_corpus_downloads_into_cache_once() {
    let text = common::corpus_text("timemachine").into_bytes();
    let server = Server::start(2, Some(text.clone()));
    let cache = tempfile::tempdir().unwrap();
    let locator = CorpusLocator {
        data_dir: None,
        cache_dir: cache.path().to_owned(),
        allow_download: true,
        url_base: Some(format!("{}/files", server.base)),
        progress: false,
    };
    let path = locator.resolve("timemachine").unwrap();
    assert_eq!(path, cache.path().join("timemachine.txt"));
    assert_eq!(std::fs::read(&path).unwrap(), text);
    assert_eq!(server.requests(), 1);
    // Second time: served from the cache, no request.
    assert_eq!(locator.read("timemachine").unwrap().len(), TIME_MACHINE.bytes as usize);
    assert_eq!(server.requests(), 1);
    assert_eq!(entries(cache.path()), ["timemachine.txt"]);
}

#[test]
fn named_corpus_download_failure_says_where_to_put_the_file() {
    let server = Server::start(1, None);
    let cache = tempfile::tempdir().unwrap();
    let locator = CorpusLocator {
        data_dir: None,
        cache_dir: cache.path().to_owned(),
        allow_download: true,
        url_base: Some(format!("{}/elsewhere", server.base)),
        progress: false,
    };
    let err = locator.resolve("timemachine").unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(matches!(err, Error::CorpusUnavailable { .. }), "{msg}");
    assert!(msg.contains("404") && msg.contains("timemachine.txt") && msg.contains("SEQMODELS_DATA"), "{msg}");
    assert!(msg.contains(&cache.path().display().to_string()), "{msg}");
    assert!(entries(cache.path()).is_empty());
}

#[test]
fn corrupt_cache_file_is_reported() {
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(cache.path().join("timemachine.txt"), "tampered").unwrap();
    let locator = CorpusLocator::offline(None, cache.path().to_owned());
    let err = locator.resolve("timemachine").unwrap_err();
    assert!(matches!(err, Error::HashMismatch { .. }), "{err}");
}
