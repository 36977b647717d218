//! The web console in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! driven over WebDriver by `fantoccini`) against the real binary on its default store: what a
//! person sees and does on each page, live updates made by another client, deep links,
//! back/forward, not-found, the keyboard, both themes' contrast, a phone-sized window, and a
//! JavaScript console free of errors. Screenshots of each page go to
//! `target/console-screenshots/` for a reviewer to look at (not committed).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod support;

use std::time::Duration;

use fantoccini::Locator;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use serde_json::{Value, json};
use support::browser::{Browser, LIVE};
use support::{EngineProcess, get_json, register_step, send};

async fn start_engine(name: &str) -> (EngineProcess, reqwest::Client) {
    let engine = EngineProcess::launch(
        name,
        &[("HEALTH_CHECK_INTERVAL", "200ms".into())],
        None,
        &[],
    );
    let client = reqwest::Client::new();
    engine.wait_healthy(&client).await;
    (engine, client)
}

fn greet() -> Value {
    json!({"id": "greet", "name": "Greet", "type": "script",
           "attributes": {"name": {"role": "required", "type": "string"},
                          "greeting": {"role": "output", "type": "string"}},
           "script": {"language": "ale", "script": "{:greeting (str \"hi \" name)}"}})
}

/// An HTTP step whose health check can never succeed (nothing listens on port 1).
fn shout() -> Value {
    json!({"id": "shout", "name": "Shout", "type": "sync",
           "attributes": {"greeting": {"role": "required", "type": "string"},
                          "style": {"role": "optional", "type": "string"},
                          "loud": {"role": "output", "type": "string"}},
           "http": {"endpoint": "http://127.0.0.1:1/shout",
                    "health_check": "http://127.0.0.1:1/health"}})
}

async fn wait_unhealthy(client: &reqwest::Client, base: &str, step: &str) {
    let deadline = tokio::time::Instant::now() + LIVE;
    loop {
        let health: Value = get_json(client, &format!("{base}/engine/health/{step}")).await;
        if health["status"] == "unhealthy" {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{step}: {health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// WCAG contrast ratio of an element's text colour against the page background.
const CONTRAST: &str = r#"
const rgb = (s) => s.match(/[\d.]+/g).slice(0, 3).map(Number);
const lum = (c) => { const [r, g, b] = c.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
const bg = rgb(getComputedStyle(document.body).backgroundColor);
return [...document.querySelectorAll(arguments_css)].map((e) => ratio(rgb(getComputedStyle(e).color), bg));
"#;

async fn contrasts(browser: &Browser, css: &str) -> Vec<f64> {
    let script = CONTRAST.replace("arguments_css", &format!("{css:?}"));
    browser
        .eval(&script)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_shows_every_step_as_a_graph_and_stays_live() {
    let (engine, client) = start_engine("console-catalog").await;
    let base = engine.base.clone();
    register_step(&client, &base, &greet()).await;
    register_step(&client, &base, &shout()).await;
    wait_unhealthy(&client, &base, "shout").await;
    let browser = Browser::open(&base, 1280, 800).await;

    // `/` leads to the console; the steps are nodes, their attributes pills, edges per role.
    browser.goto("/").await;
    assert_eq!(browser.client.current_url().await.unwrap().path(), "/ui/");
    browser.goto("/ui/steps").await;
    assert_eq!(browser.count("svg.graph [data-step]").await, 2);
    for attribute in ["name", "greeting", "style", "loud"] {
        assert_eq!(
            browser
                .count(&format!("svg.graph [data-attribute={attribute:?}]"))
                .await,
            1,
            "{attribute}"
        );
    }
    assert_eq!(browser.count("svg.graph path.edge.optional").await, 1);
    assert_eq!(browser.count("svg.graph path.edge.required").await, 2);
    assert_eq!(browser.count("svg.graph path.edge.output").await, 2);
    let node = browser.text("svg.graph [data-step=shout]").await;
    assert!(
        node.contains("in greeting: string") && node.contains("out loud: string"),
        "{node}"
    );
    // The table: type, what it runs, health with the error.
    let shout_row = browser.text("tr[data-step=shout]").await;
    assert!(shout_row.contains("sync"), "{shout_row}");
    assert!(
        shout_row.contains("http://127.0.0.1:1/shout"),
        "{shout_row}"
    );
    assert!(shout_row.contains("unhealthy"), "{shout_row}");
    assert!(
        !browser
            .text("tr[data-step=shout] .health-error")
            .await
            .is_empty()
    );
    let greet_row = browser.text("tr[data-step=greet]").await;
    assert!(
        greet_row.contains("script") && greet_row.contains("healthy"),
        "{greet_row}"
    );
    assert!(greet_row.contains("(str \"hi \" name)"), "{greet_row}");
    assert_eq!(
        browser
            .count("svg.graph .step.health-unhealthy[data-step=shout]")
            .await,
        1
    );
    browser.screenshot("steps").await;

    // Another client registers, updates and removes steps: the open page follows without a
    // reload (a marker set on the page survives).
    browser.wait_count("main[data-live-state=open]", 1).await;
    browser.eval("window.argyllMarker = 42; return null;").await;
    register_step(
        &client,
        &base,
        &json!({"id": "whisper", "name": "Whisper", "type": "script",
                "attributes": {"loud": {"role": "required", "type": "string"},
                               "quiet": {"role": "output"}},
                "script": {"language": "lua", "script": "return {quiet = 'psst'}"}}),
    )
    .await;
    browser.wait_count("svg.graph [data-step=whisper]", 1).await;
    browser
        .wait_count("svg.graph [data-attribute=quiet]", 1)
        .await;
    let mut renamed = shout();
    renamed["name"] = json!("Shout louder");
    let (status, body) = send(
        &client,
        reqwest::Method::PUT,
        &format!("{base}/engine/step/shout"),
        &renamed,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let deadline = tokio::time::Instant::now() + LIVE;
    while !browser
        .text("tr[data-step=shout]")
        .await
        .contains("Shout louder")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rename never showed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deleted = client
        .delete(format!("{base}/engine/step/whisper"))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    browser.wait_count("svg.graph [data-step=whisper]", 0).await;
    browser.wait_count("tr[data-step=whisper]", 0).await;
    assert_eq!(browser.eval("return window.argyllMarker;").await, json!(42));
    browser.screenshot("steps-live").await;

    assert_eq!(browser.errors(&[]).await, Vec::<String>::new());
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_page_deep_links_not_found_keyboard_themes_and_a_phone() {
    let (engine, client) = start_engine("console-engine").await;
    let base = engine.base.clone();
    register_step(&client, &base, &greet()).await;
    register_step(&client, &base, &shout()).await;
    wait_unhealthy(&client, &base, "shout").await;
    let info: Value = get_json(&client, &format!("{base}/engine/info")).await;
    assert_eq!(info["store"], "local", "{info}");
    let browser = Browser::open(&base, 1280, 800).await;

    // Opened directly (a deep link): version, store, health of every step.
    browser.goto("/ui/engine").await;
    assert_eq!(
        browser.text("#version").await,
        info["version"].as_str().unwrap()
    );
    assert_eq!(browser.text("#store").await, "local");
    assert_eq!(
        browser.text("#step-health").await,
        "1 healthy, 1 unhealthy, 0 unknown"
    );
    assert!(
        browser
            .text("tr[data-step=shout]")
            .await
            .contains("unhealthy")
    );
    browser.screenshot("engine").await;

    // Back and forward between pages.
    browser.goto("/ui/steps").await;
    browser.client.back().await.unwrap();
    assert_eq!(
        browser.client.current_url().await.unwrap().path(),
        "/ui/engine"
    );
    browser.client.forward().await.unwrap();
    assert_eq!(
        browser.client.current_url().await.unwrap().path(),
        "/ui/steps"
    );

    // The keyboard reaches the navigation, the theme switch and every step in the graph.
    let mut reached = Vec::new();
    for _ in 0..12 {
        let tab = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: '\u{e004}' })
            .then(KeyAction::Up { value: '\u{e004}' });
        browser.client.perform_actions(tab).await.unwrap();
        let label = browser
            .eval(
                "const e = document.activeElement; \
                 return e.getAttribute('href') || e.getAttribute('data-theme-toggle') !== null && 'theme' || e.tagName;",
            )
            .await;
        reached.push(label.as_str().unwrap_or_default().to_owned());
    }
    for wanted in [
        "/ui/steps",
        "/ui/engine",
        "theme",
        "#step-greet",
        "#step-shout",
    ] {
        assert!(
            reached.iter().any(|r| r == wanted),
            "{wanted} not in {reached:?}"
        );
    }

    // Both themes: the switch turns the page dark and back, the choice survives a reload,
    // and text keeps a contrast of at least 4.5:1.
    let light = browser
        .eval("return getComputedStyle(document.body).backgroundColor;")
        .await;
    for theme in ["dark", "light"] {
        browser.click("[data-theme-toggle]").await;
        assert_eq!(
            browser
                .eval("return document.documentElement.dataset.theme;")
                .await,
            json!(theme)
        );
        browser.client.refresh().await.unwrap();
        assert_eq!(
            browser
                .eval("return document.documentElement.dataset.theme;")
                .await,
            json!(theme)
        );
        let background = browser
            .eval("return getComputedStyle(document.body).backgroundColor;")
            .await;
        assert_eq!(
            background == light,
            theme == "light",
            "{theme}: {background}"
        );
        for ratio in contrasts(&browser, "h1, td, th, .summary, nav a, figcaption").await {
            assert!(ratio >= 4.5, "{theme}: contrast {ratio:.2}");
        }
        browser.screenshot(&format!("steps-{theme}")).await;
    }

    // A page that does not exist says so (status 404), not a spinner.
    browser.goto("/ui/no/such/page").await;
    assert_eq!(browser.text("h1").await, "Not found");
    let missing = client
        .get(format!("{base}/ui/no/such/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    browser.screenshot("not-found").await;

    // A phone-sized window: the page does not scroll sideways (the graph scrolls in its box),
    // the navigation stays visible.
    let (status, body) = send(
        &client,
        reqwest::Method::POST,
        &format!("{base}/engine/flow"),
        &json!({"id": "phone-1", "goals": ["greet"], "init": {"name": "a rather long name to wrap"}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    browser.client.set_window_size(390, 844).await.unwrap();
    for page in [
        "/ui/flows",
        "/ui/flow/phone-1",
        "/ui/steps",
        "/ui/engine",
        "/ui/start",
        "/ui/steps/new",
    ] {
        browser.goto(page).await;
        let overflow = browser
            .eval("return document.documentElement.scrollWidth - window.innerWidth;")
            .await;
        assert!(
            overflow.as_f64().unwrap() <= 0.0,
            "{page}: {overflow} px too wide"
        );
        assert!(
            browser
                .client
                .find(Locator::Css("nav a[href='/ui/engine']"))
                .await
                .unwrap()
                .is_displayed()
                .await
                .unwrap()
        );
        browser
            .screenshot(&format!(
                "phone-{}",
                page.trim_start_matches("/ui/").replace('/', "-")
            ))
            .await;
    }

    // The only console error is the 404 of the missing page itself.
    assert_eq!(
        browser
            .errors(&["no/such/page - Failed to load resource"])
            .await,
        Vec::<String>::new()
    );
    browser.close().await;
}

// ------------------------------------------------------------------ the flow view

/// What the step service of the flow-view test saw: the webhook URLs of `approve` calls.
type Webhooks = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

async fn order_steps(webhooks: Webhooks) -> String {
    use axum::Json;
    use axum::routing::post;
    let app = axum::Router::new()
        .route(
            "/approve",
            post(move |Json(body): Json<Value>| {
                let webhooks = webhooks.clone();
                async move {
                    let url = body["metadata"]["webhook_url"].as_str().unwrap().to_owned();
                    webhooks.lock().unwrap().push(url);
                    (
                        axum::http::StatusCode::ACCEPTED,
                        Json(json!({"success": true})),
                    )
                }
            }),
        )
        .route(
            "/notify",
            post(|| async { Json(json!({"success": true, "outputs": {"sent": "yes"}})) }),
        )
        .route(
            "/explode",
            post(|| async {
                Json(json!({"success": false, "error": "boom: the warehouse is closed"}))
            }),
        );
    support::serve_steps(app).await
}

/// Waits until the step service saw an `approve` call; its webhook URL.
async fn first_webhook(webhooks: &Webhooks) -> String {
    let deadline = tokio::time::Instant::now() + LIVE;
    loop {
        if let Some(url) = webhooks.lock().unwrap().first() {
            return url.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "approve was never called"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn register_order_steps(client: &reqwest::Client, base: &str, steps: &str) {
    for step in [
        json!({"id": "prep", "name": "Prepare", "type": "script",
               "attributes": {"order": {"role": "required", "type": "object"},
                              "items": {"role": "output", "type": "array"}},
               "script": {"language": "ale", "script": "{:items (:items order)}"}}),
        json!({"id": "pack", "name": "Pack", "type": "script",
               "attributes": {"items": {"role": "required", "type": "array", "for_each": true},
                              "packed": {"role": "output"}},
               "script": {"language": "lua", "script": "return {packed = 'box of ' .. items}"}}),
        json!({"id": "approve", "name": "Approve", "type": "async",
               "attributes": {"packed": {"role": "required"},
                              "approved": {"role": "output", "type": "boolean"}},
               "http": {"endpoint": format!("{steps}/approve")}}),
        json!({"id": "notify", "name": "Notify", "type": "sync",
               "attributes": {"approved": {"role": "required", "type": "boolean"},
                              "note": {"role": "optional", "type": "string"},
                              "sent": {"role": "output", "type": "string"}},
               "http": {"endpoint": format!("{steps}/notify")}}),
        json!({"id": "audit", "name": "Audit", "type": "script",
               "attributes": {"order": {"role": "required", "type": "object"},
                              "audited": {"role": "output"}},
               "predicate": {"language": "ale", "script": "false"},
               "script": {"language": "ale", "script": "{:audited true}"}}),
        json!({"id": "explode", "name": "Explode", "type": "sync",
               "attributes": {"order": {"role": "required", "type": "object"},
                              "shipped": {"role": "output"}},
               "http": {"endpoint": format!("{steps}/explode")}}),
        json!({"id": "wrap", "name": "Wrap", "type": "flow",
               "attributes": {"order": {"role": "required", "type": "object"},
                              "items": {"role": "output", "type": "array"}},
               "flow": {"goals": ["prep"]}}),
    ] {
        register_step(client, base, &step).await;
    }
}

async fn start_flow(client: &reqwest::Client, base: &str, id: &str, goals: &[&str]) {
    let (status, body) = send(
        client,
        reqwest::Method::POST,
        &format!("{base}/engine/flow"),
        &json!({"id": id, "goals": goals, "init": {"order": {"items": ["cup", "pot", "jar"]}}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// Waits until the API says `flow` has `status`.
async fn wait_flow(client: &reqwest::Client, base: &str, flow: &str, status: &str) -> Value {
    let state: Value = get_json(client, &format!("{base}/engine/flow/{flow}?wait=20s")).await;
    assert_eq!(state["status"], status, "{state}");
    state
}

async fn class_of(browser: &Browser, css: &str) -> String {
    browser
        .eval(&format!(
            "const e = document.querySelector({css:?}); return e && e.getAttribute('class');"
        ))
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flow_view_shows_the_plan_steps_values_events_and_follows_the_flow_live() {
    let (engine, client) = start_engine("console-flow").await;
    let base = engine.base.clone();
    let webhooks = Webhooks::default();
    let steps = order_steps(webhooks.clone()).await;
    register_order_steps(&client, &base, &steps).await;
    start_flow(&client, &base, "order-1", &["notify", "audit"]).await;
    // The flow waits for `approve`'s webhook: the step service has been called.
    first_webhook(&webhooks).await;
    let browser = Browser::open(&base, 1280, 800).await;
    browser.goto("/ui/flow/order-1").await;
    assert_eq!(browser.text("#flow-status").await, "active");
    // The plan, each step in its state; the fan-out shows its items done / total.
    for (step, status) in [
        ("prep", "completed"),
        ("pack", "completed"),
        ("approve", "active"),
        ("notify", "pending"),
        ("audit", "skipped"),
    ] {
        let class = class_of(&browser, &format!("svg.graph [data-step={step}]")).await;
        assert!(
            class.contains(&format!("status-{status}")),
            "{step}: {class}"
        );
    }
    assert!(
        browser
            .text("svg.graph [data-step=pack]")
            .await
            .contains("3/3 items")
    );
    assert_eq!(browser.count("svg.graph [data-attribute]").await, 7);
    // Selecting a step opens its details: inputs, outputs, work items with attempts.
    browser.click("svg.graph a[href='#exec-pack']").await;
    assert_eq!(
        browser
            .eval("return document.getElementById('exec-pack').open;")
            .await,
        json!(true)
    );
    assert_eq!(
        browser.count("#exec-pack table.work-items tbody tr").await,
        3
    );
    let pack = browser.text("#exec-pack").await;
    assert!(
        pack.contains("box of cup") && pack.contains("\"items\""),
        "{pack}"
    );
    assert_eq!(
        browser.text("#exec-pack tbody tr td:nth-child(3)").await,
        "1"
    );
    // The skipped step says why.
    browser.goto("/ui/flow/order-1#exec-audit").await;
    assert!(!browser.text("#exec-audit .step-error").await.is_empty());
    assert!(
        browser
            .text("#exec-audit")
            .await
            .contains("Skipped because")
    );
    // Attribute values and who provided them.
    assert_eq!(
        browser.text("tr[data-attribute=order] td:last-child").await,
        "init"
    );
    assert_eq!(
        browser.text("tr[data-attribute=items] td:last-child").await,
        "prep"
    );
    assert!(
        browser
            .text("tr[data-attribute=items]")
            .await
            .contains("[\"cup\",\"pot\",\"jar\"]")
    );
    // The timeline: every event so far, expandable to its payload.
    let events = get_json(&client, &format!("{base}/engine/flow/order-1/events")).await;
    assert_eq!(
        browser.count("ol.timeline li").await,
        events["count"].as_u64().unwrap() as usize
    );
    assert_eq!(class_of(&browser, "ol.timeline li").await, "");
    assert_eq!(
        browser
            .eval("return document.querySelector('ol.timeline li').dataset.type;")
            .await,
        json!("flow_started")
    );
    browser.screenshot("flow-active").await;

    // Another client completes the async step: the open page follows to the end, no reload.
    browser.wait_count("main[data-live-state=open]", 1).await;
    browser.eval("window.argyllMarker = 7; return null;").await;
    let url = first_webhook(&webhooks).await;
    let done = client
        .post(url)
        .json(&json!({"success": true, "outputs": {"approved": true}}))
        .send()
        .await
        .unwrap();
    assert!(done.status().is_success());
    wait_flow(&client, &base, "order-1", "completed").await;
    let deadline = tokio::time::Instant::now() + LIVE;
    while browser.text("#flow-status").await != "completed" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page never showed the end"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for step in ["approve", "notify"] {
        let class = class_of(&browser, &format!("svg.graph [data-step={step}]")).await;
        assert!(class.contains("status-completed"), "{step}: {class}");
    }
    assert_eq!(
        browser.text("tr[data-attribute=sent] td:last-child").await,
        "notify"
    );
    assert_eq!(browser.eval("return window.argyllMarker;").await, json!(7));
    browser.screenshot("flow-completed").await;

    // A failed flow shows its error and the failed step's.
    start_flow(&client, &base, "order-2", &["explode"]).await;
    wait_flow(&client, &base, "order-2", "failed").await;
    browser.goto("/ui/flow/order-2").await;
    assert_eq!(browser.text("#flow-status").await, "failed");
    assert!(browser.text("#flow-error").await.contains("boom"));
    assert!(
        class_of(&browser, "svg.graph [data-step=explode]")
            .await
            .contains("status-failed")
    );
    assert!(
        browser
            .text("#exec-explode .step-error")
            .await
            .contains("boom")
    );
    browser.screenshot("flow-failed").await;

    // A flow step links to its child flow, and the child back to its parent.
    start_flow(&client, &base, "parent-1", &["wrap"]).await;
    wait_flow(&client, &base, "parent-1", "completed").await;
    browser.goto("/ui/flow/parent-1#exec-wrap").await;
    browser.click("#exec-wrap a.child-link").await;
    let child = browser.text("#flow-id").await;
    assert!(child.starts_with("parent-1:wrap:"), "{child}");
    assert_eq!(browser.text("#flow-status").await, "completed");
    browser.click("#parent-link").await;
    assert_eq!(browser.text("#flow-id").await, "parent-1");

    // A flow nobody knows: "not found" (404), not a spinner.
    browser.goto("/ui/flow/no-such-flow").await;
    assert_eq!(browser.text("h1").await, "Flow not found");
    let missing = client
        .get(format!("{base}/ui/flow/no-such-flow"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    assert_eq!(
        browser
            .errors(&["no-such-flow - Failed to load resource"])
            .await,
        Vec::<String>::new()
    );
    browser.close().await;
}

// ------------------------------------------------------------------ forms

/// Replaces the text of the field `css` by typing `text` into it (real key events).
async fn type_into(browser: &Browser, css: &str, text: &str) {
    let field = browser.client.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

/// Waits until the text of `css` contains `wanted`; the text.
async fn wait_text(browser: &Browser, css: &str, wanted: &str) -> String {
    let deadline = tokio::time::Instant::now() + LIVE;
    loop {
        let text = browser
            .eval(&format!(
                "const e = document.querySelector({css:?}); return e ? (e.innerText || e.textContent || '') : '';"
            ))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if text.contains(wanted) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{css}: {text:?} never contained {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_path(browser: &Browser, wanted: &str) {
    let deadline = tokio::time::Instant::now() + LIVE;
    loop {
        let url = browser.client.current_url().await.unwrap();
        if url.path() == wanted {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "at {url}, waited for {wanted}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn choose_template(browser: &Browser, label: &str) {
    browser
        .client
        .find(Locator::Css("#step-template"))
        .await
        .unwrap()
        .select_by_label(label)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_are_registered_and_edited_and_flows_started_from_the_console() {
    let (engine, client) = start_engine("console-forms").await;
    let base = engine.base.clone();
    register_step(&client, &base, &greet()).await;
    let browser = Browser::open(&base, 1280, 800).await;

    // The editor checks the JSON as it is typed.
    browser.goto("/ui/steps").await;
    browser.click("#register-step").await;
    wait_path(&browser, "/ui/steps/new").await;
    type_into(&browser, "#step-json", r#"{"id": "shout""#).await;
    wait_text(&browser, "#step-errors", "Not valid JSON").await;
    // The server's validation message comes back next to the editor.
    let refused = json!({"id": "shout", "name": "Shout", "type": "script",
                         "script": {"language": "cobol", "script": "x"}});
    let answer: Value = client
        .post(format!("{base}/engine/step"))
        .json(&refused)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let message = answer["error"].as_str().unwrap().to_owned();
    type_into(&browser, "#step-json", &refused.to_string()).await;
    assert_eq!(browser.text("#step-errors").await, "");
    browser.click("#step-save").await;
    wait_text(
        &browser,
        "#step-errors",
        &format!("The server refused the step: {message}"),
    )
    .await;
    // A script step (Lua) typed in, an HTTP step and a flow step from the templates.
    let shout = json!({"id": "shout", "name": "Shout", "type": "script",
                       "attributes": {"greeting": {"role": "required", "type": "string"},
                                      "loud": {"role": "output", "type": "string"}},
                       "script": {"language": "lua", "script": "return {loud = string.upper(greeting)}"}});
    type_into(&browser, "#step-json", &shout.to_string()).await;
    browser.click("#step-save").await;
    wait_path(&browser, "/ui/steps").await;
    browser.wait_count("svg.graph [data-step=shout]", 1).await;
    for (template, id) in [
        ("HTTP step (sync)", "my-step"),
        ("Script step (Ale)", "my-ale-step"),
        ("Flow step (runs a child flow)", "my-flow-step"),
    ] {
        browser.goto("/ui/steps/new").await;
        choose_template(&browser, template).await;
        assert!(
            browser
                .eval("return document.getElementById('step-json').value;")
                .await
                .as_str()
                .unwrap()
                .contains(&format!("\"{id}\""))
        );
        browser.click("#step-save").await;
        wait_path(&browser, "/ui/steps").await;
        browser
            .wait_count(&format!("svg.graph [data-step={id:?}]"), 1)
            .await;
        let registered = client
            .get(format!("{base}/engine/step/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(registered.status(), 200, "{template}");
    }
    // Editing: the step's JSON, changed and saved.
    browser.click("tr[data-step=shout] a.edit").await;
    wait_path(&browser, "/ui/steps/shout/edit").await;
    let current = browser
        .eval("return document.getElementById('step-json').value;")
        .await;
    let mut edited: Value = serde_json::from_str(current.as_str().unwrap()).unwrap();
    assert_eq!(edited["id"], "shout");
    edited["name"] = json!("Shout it out");
    type_into(&browser, "#step-json", &edited.to_string()).await;
    browser.click("#step-save").await;
    wait_path(&browser, "/ui/steps").await;
    wait_text(&browser, "tr[data-step=shout]", "Shout it out").await;
    browser.goto("/ui/steps/no-such-step/edit").await;
    assert_eq!(browser.text("h1").await, "Step not found");
    browser.screenshot("step-editor").await;

    // Starting a flow: goals, the plan and what it needs (as the API plans it).
    browser.goto("/ui/start").await;
    browser.click("input[name=goal][value=shout]").await;
    let plan: Value = client
        .post(format!("{base}/engine/plan"))
        .json(&json!({"goals": ["shout"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let required: Vec<&str> = plan["required"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|name| name.as_str().unwrap())
        .collect();
    wait_text(&browser, "#plan-preview", "steps will run").await;
    assert_eq!(
        browser.count("#plan-preview svg.graph [data-step]").await,
        plan["steps"].as_object().unwrap().len()
    );
    assert_eq!(
        browser.count("#required-attributes li").await,
        required.len()
    );
    for name in &required {
        assert_eq!(
            browser
                .count(&format!("#required-attributes li[data-attribute={name:?}]"))
                .await,
            1
        );
    }
    // Another goal instead: the editor is prefilled for it and checks the values as typed.
    browser.click("input[name=goal][value=shout]").await;
    browser.click("input[name=goal][value=greet]").await;
    wait_text(&browser, "#required-attributes", "name: string").await;
    assert_eq!(
        browser.count("#plan-preview svg.graph [data-step]").await,
        1
    );
    let template = browser
        .eval("return document.getElementById('init').value;")
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(template.as_str().unwrap()).unwrap(),
        json!({"name": ""})
    );
    type_into(&browser, "#init", r#"{"name": 5}"#).await;
    wait_text(&browser, "#init-errors", "name: must be a string").await;
    type_into(&browser, "#init", "{}").await;
    wait_text(&browser, "#init-errors", "name: required by the plan").await;
    type_into(&browser, "#init", "[1, ").await;
    wait_text(&browser, "#init-errors", "Not valid JSON").await;
    type_into(&browser, "#init", r#"{"name": "Ada"}"#).await;
    assert_eq!(browser.text("#init-errors").await, "");
    browser.screenshot("start").await;
    type_into(&browser, "#flow-id", "ui-flow-1").await;
    browser.click("#start-button").await;
    wait_path(&browser, "/ui/flow/ui-flow-1").await;
    wait_text(&browser, "#flow-status", "completed").await;
    wait_text(&browser, "tr[data-attribute=greeting]", "hi Ada").await;
    // A start the server refuses (a blank id) shows the server's message.
    browser.goto("/ui/start").await;
    browser.click("input[name=goal][value=greet]").await;
    wait_text(&browser, "#required-attributes", "name").await;
    type_into(&browser, "#init", r#"{"name": "Bo"}"#).await;
    type_into(&browser, "#flow-id", "   ").await;
    browser.click("#start-button").await;
    wait_text(&browser, "#start-error", "Valid Flow ID is required").await;

    // The refused requests above are the only failed loads.
    assert_eq!(
        browser
            .errors(&[
                "/engine/step - Failed to load resource: the server responded with a status of 400",
                "/engine/flow - Failed to load resource: the server responded with a status of 400",
                "no-such-step/edit - Failed to load resource: the server responded with a status of 404",
            ])
            .await,
        Vec::<String>::new()
    );
    browser.close().await;
}

// ------------------------------------------------------------------ archived flows

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archived_flow_is_read_back_the_same_way_and_read_only() {
    let moto = argyll_testkit::MotoServer::start().unwrap();
    moto.create_bucket("flows").unwrap();
    let engine = EngineProcess::launch(
        "console-archive",
        &[
            ("ARCHIVE_BUCKET_URL", "s3://flows".into()),
            ("ARCHIVE_MAX_AGE", "1s".into()),
            ("ARCHIVE_SWEEP_INTERVAL", "1s".into()),
            ("AWS_ENDPOINT_URL", moto.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ],
        None,
        &[],
    );
    let client = reqwest::Client::new();
    engine.wait_healthy(&client).await;
    let base = engine.base.clone();
    register_step(&client, &base, &greet()).await;
    let (status, body) = send(
        &client,
        reqwest::Method::POST,
        &format!("{base}/engine/flow"),
        &json!({"id": "kept-1", "goals": ["greet"], "init": {"name": "Ada"}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // Wait for the archiver: the API then reads the flow back from the bucket.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let events: Value = get_json(
            &client,
            &format!("{base}/engine/flow/kept-1/events?limit=1"),
        )
        .await;
        if events["archived"] == true {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never archived: {events}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let browser = Browser::open(&base, 1280, 800).await;
    browser.goto("/ui/flow/kept-1").await;
    assert_eq!(browser.text("#flow-status").await, "completed");
    assert!(browser.text("dl.facts").await.contains("read-only"));
    assert!(
        class_of(&browser, "svg.graph [data-step=greet]")
            .await
            .contains("status-completed")
    );
    assert!(
        browser
            .text("tr[data-attribute=greeting]")
            .await
            .contains("hi Ada")
    );
    assert!(browser.count("ol.timeline li").await >= 4);
    // Nothing changes an archived flow: the page does not subscribe.
    assert_eq!(browser.count("main[data-live]").await, 0);
    browser.screenshot("flow-archived").await;
    assert_eq!(browser.errors(&[]).await, Vec::<String>::new());
    browser.close().await;
}

// ------------------------------------------------------------------ the flows list

/// The ids of the rows of the flows table, top to bottom.
async fn listed(browser: &Browser) -> Vec<String> {
    browser
        .eval("return [...document.querySelectorAll('table.flows tbody tr')].map((r) => r.dataset.flow);")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect()
}

/// The ids of a page of `GET /engine/flow` (and its next cursor).
async fn api_page(
    client: &reqwest::Client,
    base: &str,
    query: &str,
) -> (Vec<String>, Option<String>) {
    let page: Value = get_json(client, &format!("{base}/engine/flow?{query}")).await;
    let ids = page["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, page["next_cursor"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flows_list_is_newest_first_filtered_paged_and_live() {
    let (engine, client) = start_engine("console-flows").await;
    let base = engine.base.clone();
    let webhooks = Webhooks::default();
    let steps = order_steps(webhooks.clone()).await;
    register_order_steps(&client, &base, &steps).await;
    register_step(&client, &base, &greet()).await;
    for n in 0..120 {
        let (status, body) = send(
            &client,
            reqwest::Method::POST,
            &format!("{base}/engine/flow"),
            &json!({"id": format!("batch-{n:03}"), "goals": ["greet"], "init": {"name": "x"}}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    for n in 0..3 {
        start_flow(&client, &base, &format!("bad-{n}"), &["explode"]).await;
        wait_flow(&client, &base, &format!("bad-{n}"), "failed").await;
    }
    wait_flow(&client, &base, "batch-119", "completed").await;
    let browser = Browser::open(&base, 1280, 800).await;

    // Newest first, 50 a page, as the API's cursor pages them.
    browser.goto("/ui/").await;
    let first = listed(&browser).await;
    assert_eq!(first.len(), 50);
    assert_eq!(first[0], "bad-2");
    let (api_first, cursor) = api_page(&client, &base, "sort=recent&limit=50").await;
    assert_eq!(first, api_first);
    let row = browser.text("tr[data-flow=batch-119]").await;
    assert!(row.contains("completed") && row.contains("greet"), "{row}");
    assert!(
        row.contains(" ms") || row.contains(" s"),
        "a duration: {row}"
    );
    assert!(browser.text("tr[data-flow=bad-2]").await.contains("boom"));
    browser.click("#older").await;
    let second = listed(&browser).await;
    let (api_second, _) = api_page(
        &client,
        &base,
        &format!(
            "sort=recent&limit=50&cursor={}",
            cursor.unwrap().replace(':', "%3A")
        ),
    )
    .await;
    assert_eq!(second, api_second);
    browser.click("#older").await;
    let third = listed(&browser).await;
    assert_eq!(first.len() + second.len() + third.len(), 123);
    assert_eq!(browser.count("#older").await, 0);
    assert_eq!(third.last().map(String::as_str), Some("batch-000"));
    browser.click("#newest").await;
    assert_eq!(listed(&browser).await, first);
    browser.screenshot("flows").await;

    // Filters: status, id prefix, both.
    browser
        .client
        .find(Locator::Css("#status"))
        .await
        .unwrap()
        .select_by_value("failed")
        .await
        .unwrap();
    browser.click("form.filters button").await;
    // The list was at /ui/flows already: wait for the filtered page itself.
    browser
        .wait_count("select#status option[value=failed][selected]", 1)
        .await;
    assert_eq!(listed(&browser).await, vec!["bad-2", "bad-1", "bad-0"]);
    browser.goto("/ui/flows?prefix=batch-11").await;
    let prefixed = listed(&browser).await;
    assert_eq!(prefixed.len(), 10);
    assert!(
        prefixed.iter().all(|id| id.starts_with("batch-11")),
        "{prefixed:?}"
    );
    assert_eq!(prefixed[0], "batch-119");
    browser.goto("/ui/flows?prefix=nothing-like-this").await;
    assert_eq!(browser.text("#no-flows").await, "No flows match.");

    // Live: a flow started by another client appears at the top, and its status changes
    // when it finishes, without a reload.
    browser.goto("/ui/flows").await;
    browser.wait_count("main[data-live-state=open]", 1).await;
    browser.eval("window.argyllMarker = 3; return null;").await;
    start_flow(&client, &base, "held-1", &["notify"]).await;
    browser
        .wait_count("tr[data-flow=held-1][data-status=active]", 1)
        .await;
    assert_eq!(listed(&browser).await[0], "held-1");
    let url = first_webhook(&webhooks).await;
    client
        .post(url)
        .json(&json!({"success": true, "outputs": {"approved": true}}))
        .send()
        .await
        .unwrap();
    browser
        .wait_count("tr[data-flow=held-1][data-status=completed]", 1)
        .await;
    assert_eq!(browser.eval("return window.argyllMarker;").await, json!(3));
    assert_eq!(browser.errors(&[]).await, Vec::<String>::new());
    browser.close().await;
}
