//! Real web servers on loopback for the express tests, started and stopped by the
//! tests: Debian's nginx (ranges, and TLS with a self-signed certificate made here
//! with openssl), Python's `http.server` (which ignores `Range`), and a small
//! server of our own that cuts transfers in the middle (`cutting_server.py`).
//! Each is stopped (killed by its process id, then waited for) when dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server process, killed and reaped when dropped.
pub struct Server {
    child: Child,
    /// Its plain-HTTP port.
    pub port: u16,
    /// Its HTTPS port (nginx only).
    pub tls_port: Option<u16>,
    /// The certificate it presents over TLS, as PEM (nginx only).
    pub certificate: Option<PathBuf>,
    /// What it logs: one line per request with the Range header, status and bytes sent.
    pub log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `http://127.0.0.1:PORT/NAME`.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// `https://127.0.0.1:PORT/NAME`.
    pub fn tls_url(&self, name: &str) -> String {
        format!("https://127.0.0.1:{}/{name}", self.tls_port.expect("a TLS port"))
    }

    /// The logged requests, one line each.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log).unwrap_or_default().lines().map(str::to_owned).collect()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before it listened: {status}");
        }
        assert!(Instant::now() < deadline, "{what} does not listen on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A self-signed certificate for 127.0.0.1 (not a CA: rustls refuses a CA as
/// server certificate), with its key, in `dir`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let config = dir.join("req.cnf");
    std::fs::write(
        &config,
        "[req]\ndistinguished_name = dn\nx509_extensions = leaf\nprompt = no\n[dn]\nCN = 127.0.0.1\n[leaf]\n\
         basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n\
         extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1, DNS:localhost\n",
    )
    .unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .arg("-config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl (./test.sh installs it)");
    assert!(status.success(), "openssl req failed");
    (cert, key)
}

/// Debian's nginx serving `root` on loopback, over HTTP and HTTPS, as this user,
/// with a configuration in `work` (nginx-light; `./test.sh` installs it).
pub fn nginx(root: &Path, work: &Path) -> Server {
    std::fs::create_dir_all(work.join("tmp")).unwrap();
    let (cert, key) = certificate(work);
    let (port, tls_port) = (free_port(), free_port());
    let log = work.join("access.log");
    let w = work.display();
    let config = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {w}/nginx.pid;\nerror_log {w}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  default_type application/octet-stream;\n\
           log_format ranges '$http_range $status $body_bytes_sent';\n  access_log {log} ranges;\n\
           client_body_temp_path {w}/tmp; proxy_temp_path {w}/tmp; fastcgi_temp_path {w}/tmp;\n\
           uwsgi_temp_path {w}/tmp; scgi_temp_path {w}/tmp;\n\
           server {{\n    listen 127.0.0.1:{port};\n    listen 127.0.0.1:{tls_port} ssl;\n\
             ssl_certificate {cert};\n    ssl_certificate_key {key};\n    root {root};\n  }}\n}}\n",
        log = log.display(),
        cert = cert.display(),
        key = key.display(),
        root = root.display(),
    );
    let conf = work.join("nginx.conf");
    std::fs::write(&conf, config).unwrap();
    let mut child = Command::new("/usr/sbin/nginx")
        .arg("-p")
        .arg(work)
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(work.join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx: ./test.sh installs nginx-light");
    wait_for(port, &mut child, "nginx");
    wait_for(tls_port, &mut child, "nginx (TLS)");
    Server { child, port, tls_port: Some(tls_port), certificate: Some(cert), log }
}

/// Reads the port a server prints on its first line of output.
fn announced_port(child: &mut Child, what: &str) -> u16 {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    line.split_whitespace()
        .find_map(|word| word.trim_end_matches(|c: char| !c.is_ascii_digit()).parse::<u16>().ok())
        .unwrap_or_else(|| panic!("{what} did not say its port: {line:?}"))
}

/// `python3 -m http.server` serving `root`: it ignores `Range` and always sends the whole file.
pub fn python_http_server(root: &Path, work: &Path) -> Server {
    let mut child = Command::new("python3")
        .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0", "--directory"])
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    // "Serving HTTP on 127.0.0.1 port 40231 (http://127.0.0.1:40231/) ..."
    let port = line
        .split(" port ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("http.server did not say its port: {line:?}"));
    wait_for(port, &mut child, "python3 -m http.server");
    Server { child, port, tls_port: None, certificate: None, log: work.join("none.log") }
}

/// The server that cuts transfers: while `control` holds a number N > 0, the next
/// N responses of more than 4 KiB are cut in the middle.
pub fn cutting_server(root: &Path, control: &Path) -> Server {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/express/cutting_server.py");
    let mut child = Command::new("python3")
        .arg("-u")
        .arg(script)
        .arg(root)
        .arg(control)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let port = announced_port(&mut child, "cutting_server.py");
    wait_for(port, &mut child, "cutting_server.py");
    let log = root.parent().unwrap().join("cutting-server.log");
    Server { child, port, tls_port: None, certificate: None, log }
}
