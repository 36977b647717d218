//! A headless Chromium driven over WebDriver (`fantoccini`, `chromedriver` from the testkit)
//! for the console's tests: reading the page in one step, waiting for live changes,
//! screenshots, and the browser console's errors.

use std::path::PathBuf;
use std::time::Duration;

use argyll_testkit::Chromedriver;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// How long a live change may take to reach the page before the test fails.
pub const LIVE: Duration = Duration::from_secs(20);

/// `POST /session/{id}/se/log {"type": "browser"}`: the page's console messages since the
/// last read (chromedriver's log endpoint).
#[derive(Debug)]
pub struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

pub struct Browser {
    pub client: Client,
    _driver: Chromedriver,
    base: String,
}

impl Browser {
    pub async fn open(base: &str, width: u32, height: u32) -> Browser {
        let driver = Chromedriver::start().unwrap();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": argyll_testkit::chromium_binary(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--no-first-run",
                         format!("--window-size={width},{height}")],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url())
            .await
            .unwrap();
        Browser {
            client,
            _driver: driver,
            base: base.to_owned(),
        }
    }

    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    /// The text of the first element matching `css`, read in one step (a live refresh may
    /// replace the element between a find and a read); the text as rendered, or the text
    /// content of what is not rendered (closed details, SVG).
    pub async fn text(&self, css: &str) -> String {
        let script = format!(
            "const e = document.querySelector({css:?}); \
             return e === null ? null : (e.innerText || e.textContent);"
        );
        match self.eval(&script).await {
            Value::String(text) => text.trim().to_owned(),
            other => panic!("{css}: {other}"),
        }
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    pub async fn eval(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Waits until `css` matches `wanted` elements.
    pub async fn wait_count(&self, css: &str, wanted: usize) {
        let deadline = tokio::time::Instant::now() + LIVE;
        loop {
            let found = self.count(css).await;
            if found == wanted {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{css}: {found} elements, waited for {wanted}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A screenshot of the top of the page.
    pub async fn screenshot(&self, name: &str) {
        self.eval("window.scrollTo(0, 0); return null;").await;
        let png = self.client.screenshot().await.unwrap();
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// The console's messages at level SEVERE (errors, failed loads) since the last call,
    /// except those `expected` (substrings).
    pub async fn errors(&self, expected: &[&str]) -> Vec<String> {
        let entries = self.client.issue_cmd(BrowserLog).await.unwrap();
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .filter(|message| !expected.iter().any(|e| message.contains(e)))
            .collect()
    }

    pub async fn close(self) {
        self.client.close().await.unwrap();
    }
}

pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("console-screenshots")
}
