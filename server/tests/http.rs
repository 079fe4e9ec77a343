//! Starts the real `rtcroom-server` binary on an ephemeral port and talks HTTP to it.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(static_dir: &std::path::Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rtcroom-server"))
            .args(["--port", "0", "--bind", "127.0.0.1", "--static-dir"])
            .arg(static_dir)
            .arg("--pkg-dir")
            .arg(static_dir.join("pkg"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rtcroom-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read url line");
        let base = line
            .trim()
            .strip_prefix("rtcroom-server listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim_end_matches('/')
            .to_string();
        Server { child, base }
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        assert!(status.success());
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not stop within 5 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[tokio::test]
async fn healthz_static_files_and_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("index.html"),
        "<!doctype html><title>demo</title>hello rtcroom",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("pkg")).unwrap();
    std::fs::write(dir.path().join("pkg/rtcroom_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let server = Server::start(dir.path());

    let health = reqwest::get(format!("{}/healthz", server.base)).await.unwrap();
    assert_eq!(health.status(), 200);
    let body: serde_json::Value = serde_json::from_str(&health.text().await.unwrap()).unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["protocol"], rtcroom_protocol::PROTOCOL_VERSION);

    let index = reqwest::get(format!("{}/", server.base)).await.unwrap();
    assert_eq!(index.status(), 200);
    assert!(index.text().await.unwrap().contains("hello rtcroom"));

    let wasm = reqwest::get(format!("{}/pkg/rtcroom_bg.wasm", server.base))
        .await
        .unwrap();
    assert_eq!(wasm.status(), 200);
    assert_eq!(wasm.headers()["content-type"], "application/wasm");
    assert_eq!(&wasm.bytes().await.unwrap()[..4], b"\0asm");

    let missing = reqwest::get(format!("{}/nope.txt", server.base)).await.unwrap();
    assert_eq!(missing.status(), 404);

    let status = server.terminate();
    assert!(status.success(), "SIGTERM must be a clean exit, got {status}");
}
