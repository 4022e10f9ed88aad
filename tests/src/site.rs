//! The harness's temporary evald installation ([`Site`]) and the loopback ports it uses.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Daemon, SECRET, TestServer, evald_bin};

/// A free port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("free port: {e}"))
}

/// A port nothing answers on, for as long as the returned socket lives: bound but not listening,
/// so a connect is refused, and no other test (which binds `127.0.0.1:0`) can be given it, as
/// it could a port found free and let go.
pub fn dead_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap_or_else(|e| panic!("socket: {e}"));
    socket
        .bind(([127, 0, 0, 1], 0).into())
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let port = socket
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"))
        .port();
    (socket, port)
}

/// The config line a site listens with.
fn listen_line(port: u16) -> String {
    format!("listen = \"127.0.0.1:{port}\"")
}

/// A temporary evald installation: `evald.toml`, `jobs/`, `data/`.
pub struct Site {
    /// The folder (removed on drop).
    pub dir: tempfile::TempDir,
    /// The HTTP port in the config (moved by [`Site::serve`] if another process took it).
    port: std::sync::atomic::AtomicU16,
    /// Extra environment for every evald process.
    pub env: Vec<(String, String)>,
}

impl Site {
    /// A site whose config has the test server as endpoint `test` (key from `TEST_KEY`) and a
    /// simulated endpoint `sim`, plus `extra` config text.
    pub fn new(server: Option<&TestServer>, extra: &str) -> Site {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let port = free_port();
        let mut cfg = format!(
            "{}\njobs_dir = \"jobs\"\ndata_dir = \"data\"\nplugins_dir = \"plugins\"\n{extra}\n[endpoints.sim]\nsimulated = {{ latency_ms = 5, jitter_ms = 0, tokens_per_second = 1000 }}\n",
            listen_line(port)
        );
        if let Some(s) = server {
            cfg.push_str(&format!(
                "\n[endpoints.test]\nurl = \"{}\"\napi_key_env = \"TEST_KEY\"\nprovider = \"testprov\"\ntimeout = \"2s\"\nmax_retries = 2\n",
                s.url()
            ));
        }
        std::fs::create_dir_all(dir.path().join("jobs")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(dir.path().join("plugins")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("evald.toml"), cfg).unwrap_or_else(|e| panic!("{e}"));
        Site {
            dir,
            port: port.into(),
            env: vec![("TEST_KEY".into(), SECRET.into())],
        }
    }

    /// The HTTP port in the config.
    pub fn port(&self) -> u16 {
        self.port.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The config file.
    pub fn config(&self) -> PathBuf {
        self.path().join("evald.toml")
    }

    /// Writes `jobs/NAME.toml`.
    pub fn job(&self, name: &str, text: &str) {
        std::fs::write(self.path().join("jobs").join(format!("{name}.toml")), text)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The page's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(evald_bin());
        // The config by a relative path, from its folder, as `evald serve` in /etc/evald or a
        // checkout is run: every path evald derives must work from it (a deleted job file was
        // once left scheduled this way).
        c.current_dir(self.path())
            .args(args)
            .arg("--config")
            .arg("evald.toml");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.env_remove("EVALD_CONFIG").env("RUST_LOG", "info");
        c
    }

    /// `evald run JOB --json`, which must succeed: the report.
    pub fn run_json(&self, job: &str) -> Value {
        let out = self.evald(&["run", job, "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("run --json: {e}"))
    }

    /// `evald export --format jsonl --job JOB`, which must succeed: the records.
    pub fn export_job(&self, job: &str) -> Vec<Value> {
        let out = self.evald(&["export", "--format", "jsonl", "--job", job]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Starts an evald command without waiting for it (its output discarded).
    pub fn evald_child(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("evald {args:?}: {e}"))
    }

    /// Runs an evald command to completion.
    pub fn evald(&self, args: &[&str]) -> Output {
        self.evald_env(args, &[])
    }

    /// Runs an evald command to completion; it must succeed (else the test fails with its stderr).
    pub fn evald_ok(&self, args: &[&str]) -> Output {
        let out = self.evald(args);
        assert!(
            out.status.success(),
            "evald {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs an evald command to completion with extra environment.
    pub fn evald_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap_or_else(|e| panic!("evald {args:?}: {e}"))
    }

    /// Runs an evald command whose stdout is a pipe nobody reads any more (as in `evald stats |
    /// head -1` once `head` has gone); its stderr is captured.
    pub fn evald_to_closed_pipe(&self, args: &[&str]) -> Output {
        let (reader, writer) = std::io::pipe().unwrap_or_else(|e| panic!("pipe: {e}"));
        drop(reader);
        self.command(args)
            .stdout(writer)
            .output()
            .unwrap_or_else(|e| panic!("evald {args:?}: {e}"))
    }

    /// Starts `evald serve` (logging to `daemon.log` in the site) and waits until it answers
    /// `/healthz`. The port was found free when the site was made, and another test's process
    /// may have been given it since: a daemon that cannot listen on it is started again on
    /// another (the config's `listen` rewritten), up to five times.
    pub async fn serve(&self) -> Daemon {
        for _ in 0..5 {
            match self.try_serve().await {
                Ok(d) => return d,
                Err(log) => {
                    let (old, new) = (self.port(), free_port());
                    let cfg =
                        std::fs::read_to_string(self.config()).unwrap_or_else(|e| panic!("{e}"));
                    assert!(
                        cfg.contains(&listen_line(old)),
                        "the config no longer listens where the site said: {cfg}"
                    );
                    let cfg = cfg.replace(&listen_line(old), &listen_line(new));
                    std::fs::write(self.config(), cfg).unwrap_or_else(|e| panic!("{e}"));
                    self.port.store(new, std::sync::atomic::Ordering::Relaxed);
                    eprintln!("port {old} was taken ({log}); trying {new}");
                }
            }
        }
        panic!("evald serve found no free port in five tries");
    }

    /// [`Site::serve`] once; the daemon's last log line if it could not listen on its port.
    async fn try_serve(&self) -> Result<Daemon, String> {
        let log = self.path().join("daemon.log");
        // The daemon says it is serving once it listens: counted, since the log is appended
        // to by every start, and awaited before asking `/healthz`, which whoever else holds the
        // port might answer (or take and never answer).
        const SERVING: &str = "evald is serving";
        let before = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches(SERVING)
            .count();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("{e}"));
        let err = file.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let child = self
            .command(&["serve"])
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn evald serve: {e}"));
        let mut d = Daemon {
            child: Some(child),
            log,
        };
        let url = format!("{}/healthz", self.url());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                let text = d.log_text();
                let listen = format!("cannot listen on 127.0.0.1:{}", self.port());
                if let Some(line) = text.lines().rev().find(|l| l.contains(&listen)) {
                    return Err(line.to_string());
                }
                panic!("evald serve exited with {status}: {text}");
            }
            if d.log_text().matches(SERVING).count() > before
                && tokio::time::timeout(Duration::from_secs(5), reqwest::get(&url))
                    .await
                    .is_ok_and(|r| r.is_ok_and(|r| r.status().is_success()))
            {
                return Ok(d);
            }
            assert!(
                Instant::now() < deadline,
                "evald serve did not answer /healthz: {}",
                d.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// GETs a path of the page; (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::get(format!("{}{path}", self.url()))
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    /// The runs of `job` the API lists (at most 1,000), newest first, parsed; anything but a
    /// list in a 200 fails the test.
    pub async fn runs(&self, job: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!("/api/v1/runs?job={job}&limit=1000"))
            .await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// The JSONL export, parsed.
    pub async fn records(&self, query: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/export.jsonl{query}")).await;
        assert_eq!(status, 200, "{body}");
        body.lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Polls `cond` until it holds (what the daemon does is asynchronous: a scheduled run, a
    /// reload); fails after `secs` seconds with `what`.
    pub async fn until<F, Fut>(&self, secs: u64, what: &str, mut cond: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !cond().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
