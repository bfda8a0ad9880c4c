//! One service process: its stdout and stderr collected line by line, killed (SIGKILL) and
//! reaped when dropped, so a failing test never leaves a server behind.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Environment variables the services read; a developer's shell must not reconfigure them.
fn inherited_config(key: &OsStr) -> bool {
    key.to_str().is_some_and(|key| {
        key.starts_with("TURBINE_") || key.starts_with("OTEL_") || key == "RUST_LOG"
    })
}

/// A running child process.
pub struct Process {
    name: String,
    pid: u32,
    child: Mutex<Child>,
    log: Arc<Mutex<String>>,
}

impl Process {
    /// Starts `program` with `args` under `name` (used in messages). The environment is the
    /// test's, without `TURBINE_*`, `OTEL_*` and `RUST_LOG`, plus `RUST_LOG=info` and `NO_COLOR=1`.
    pub fn spawn<I, S>(name: &str, program: &Path, args: I) -> Process
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(program);
        command.args(args);
        for (key, _) in std::env::vars_os() {
            if inherited_config(&key) {
                command.env_remove(key);
            }
        }
        let mut child = command
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.display()));
        let log = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        collect(stdout, log.clone());
        collect(stderr, log.clone());
        Process {
            name: name.to_string(),
            pid: child.id(),
            child: Mutex::new(child),
            log,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The exit status, if the process has ended.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.child().try_wait().ok().flatten()
    }

    /// Waits until a log line satisfies `find` (which returns what it extracted), failing early
    /// when the process exits and after `timeout`.
    pub async fn wait_for_log<T>(
        &self,
        what: &str,
        timeout: Duration,
        find: impl Fn(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.log().lines().find_map(&find) {
                return found;
            }
            if let Some(status) = self.exited() {
                // The readers may still hold the last lines.
                tokio::time::sleep(Duration::from_millis(50)).await;
                panic!(
                    "{} exited ({status}) before logging {what}:\n{}",
                    self.name,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not log {what} within {timeout:?}:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The gRPC address from the `listening on <addr>` line every service logs once bound.
    pub async fn listen_addr(&self) -> SocketAddr {
        self.wait_for_log(
            "its gRPC address",
            Duration::from_secs(60),
            parse_after("listening on "),
        )
        .await
    }

    /// The Prometheus address from the `metrics_addr=Some(<addr>)` field of the telemetry line.
    pub async fn metrics_addr(&self) -> SocketAddr {
        self.wait_for_log(
            "its metrics address",
            Duration::from_secs(60),
            parse_after("metrics_addr=Some("),
        )
        .await
    }

    /// SIGKILL, as when a node dies: no drain, no flush.
    pub fn kill(&self) {
        let mut child = self.child();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGTERM, as Kubernetes stops a pod.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits for the process to exit; fails after `timeout`.
    pub async fn wait(&self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {timeout:?}:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.kill();
        }
    }
}

/// A parser for the socket address that follows `marker` on a line.
fn parse_after(marker: &'static str) -> impl Fn(&str) -> Option<SocketAddr> {
    move |line| {
        let rest = line.split(marker).nth(1)?;
        let end = rest
            .find(|c: char| c.is_whitespace() || c == ')' || c == '"')
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    }
}

fn collect(stream: impl Read + Send + 'static, log: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            log.push_str(&line);
            log.push('\n');
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_from_log_lines() {
        let listen = parse_after("listening on ");
        assert_eq!(
            listen("INFO turbine_rpc::server: listening on 127.0.0.1:45905 service=\"x\""),
            Some("127.0.0.1:45905".parse().unwrap())
        );
        assert_eq!(
            listen("INFO turbine_orchestrator::server: listening on 127.0.0.1:1"),
            Some("127.0.0.1:1".parse().unwrap())
        );
        let metrics = parse_after("metrics_addr=Some(");
        assert_eq!(
            metrics(
                "telemetry initialised otlp_endpoint=\"off\" metrics_addr=Some(127.0.0.1:34453)"
            ),
            Some("127.0.0.1:34453".parse().unwrap())
        );
        assert_eq!(metrics("metrics_addr=None"), None);
    }
}
