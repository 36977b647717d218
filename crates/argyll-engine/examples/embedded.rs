//! Embedding the engine in a Rust service: an in-memory store, an in-process step handler
//! (`local://greet`, no HTTP hop) and an Ale script step, one flow run to completion.
//!
//! Run with `cargo run -p argyll-engine --example embedded`.

use std::time::Duration;

use argyll_engine::{Engine, EngineConfig, HandlerError, LocalHandlers, StartFlow};
use argyll_model::{Args, AttributeSpec, AttributeType, ScriptLanguage, Step};
use argyll_store::EmbeddedStore;
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // In-process handlers: steps whose endpoint is `local://NAME` run these functions.
    let handlers = LocalHandlers::new();
    handlers.register("greet", |work| async move {
        let name = work
            .inputs
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| HandlerError::Permanent("name must be a string".into()))?;
        let mut outputs = Args::new();
        outputs.insert("greeting".into(), json!(format!("Hello, {name}!")));
        Ok(outputs)
    });

    let engine = Engine::builder(EmbeddedStore::new())
        .config(EngineConfig::default())
        .local_handlers(handlers)
        .build()?;
    engine.start().await?;

    engine
        .register_step(
            Step::sync("greet", "local://greet")
                .with_attribute("name", AttributeSpec::required(AttributeType::String))
                .with_attribute("greeting", AttributeSpec::output(AttributeType::String)),
        )
        .await?;
    engine
        .register_step(
            Step::script(
                "shout",
                ScriptLanguage::Ale,
                "{:loud (str greeting \" !!\")}",
            )
            .with_attribute("greeting", AttributeSpec::required(AttributeType::String))
            .with_attribute("loud", AttributeSpec::output(AttributeType::String)),
        )
        .await?;

    let mut init = Args::new();
    init.insert("name".into(), json!("Argyll"));
    engine
        .start_flow(StartFlow {
            flow_id: "hello".into(),
            goals: vec!["shout".into()],
            init,
            metadata: Default::default(),
        })
        .await?;

    let flow = engine
        .wait_for_flow("hello", Duration::from_secs(5))
        .await?
        .ok_or("flow not found")?;
    println!("flow {} is {}", flow.id, flow.status);
    for (name, attribute) in flow.attributes.iter() {
        println!("  {name} = {}", attribute.value);
    }
    engine.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
