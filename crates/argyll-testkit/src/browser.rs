//! A `chromedriver` (Debian's `chromium-driver`, installed by `scripts/ensure-tools --test`)
//! on a free port, for the console's browser tests, and where the Chromium it drives is.

use crate::{HarnessError, fail, free_port, spawn_guarded, stop_guarded, wait_until};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::time::Duration;

/// A running `chromedriver`, stopped when dropped.
#[derive(Debug)]
pub struct Chromedriver {
    port: u16,
    guard: Option<Child>,
}

/// `$CHROMEDRIVER`, else `/usr/bin/chromedriver`, else `chromedriver` on `PATH`.
fn chromedriver_binary() -> String {
    std::env::var("CHROMEDRIVER").unwrap_or_else(|_| {
        if std::path::Path::new("/usr/bin/chromedriver").exists() {
            "/usr/bin/chromedriver".into()
        } else {
            "chromedriver".into()
        }
    })
}

/// `$CHROMIUM`, else `/usr/bin/chromium`.
pub fn chromium_binary() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

impl Chromedriver {
    /// Starts `chromedriver` and waits until it answers `/status`.
    pub fn start() -> Result<Self, HarnessError> {
        let port = free_port()?;
        let binary = chromedriver_binary();
        if !std::path::Path::new(&binary).exists() && binary.contains('/') {
            return Err(fail(format!(
                "{binary} is missing: run scripts/ensure-tools --test (installs chromium and chromium-driver)"
            )));
        }
        let guard = spawn_guarded(&format!("'{binary}' --port={port} --allowed-ips=127.0.0.1"))?;
        let driver = Chromedriver {
            port,
            guard: Some(guard),
        };
        wait_until(
            &format!("chromedriver on port {port}"),
            Duration::from_secs(30),
            || status_ready(port),
        )?;
        Ok(driver)
    }

    /// The WebDriver URL (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = stop_guarded(&mut self.guard, self.port);
    }
}

/// Whether `GET /status` says the driver is ready. Read until that answer arrives rather than
/// to the end: chromedriver keeps the connection open whatever the request asks.
fn status_ready(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut reply = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(read) = stream.read(&mut buffer) {
        if read == 0 || reply.len() > 1 << 20 {
            break;
        }
        reply.extend_from_slice(buffer.get(..read).unwrap_or_default());
        if String::from_utf8_lossy(&reply).contains("\"ready\":true") {
            return true;
        }
    }
    false
}
