//! What a script can and cannot do: limits end runaway scripts with an error naming the limit,
//! runs never see each other's globals, pooled states serve concurrent runs correctly.
//!
//! This binary installs Ale's metering allocator, as the server does, so that Ale's memory
//! limit is enforced here.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use argyll_script::{
    AleEngine, Attributes, LimitKind, LuaEngine, Phase, ScriptEngine, ScriptError, ScriptLimits,
    ScriptRunner,
};
use serde_json::json;

#[global_allocator]
static ALLOCATOR: argyll_script::MeteredAlloc<std::alloc::System> =
    argyll_script::MeteredAlloc(std::alloc::System);

const MIB: usize = 1024 * 1024;

fn inputs(value: serde_json::Value) -> Attributes {
    value.as_object().cloned().unwrap()
}

fn args(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// A runner whose Lua pool keeps a single state, so consecutive runs share it.
fn single_state_runner(limits: ScriptLimits) -> (ScriptRunner, Arc<LuaEngine>) {
    let lua = Arc::new(LuaEngine::with_pool_size(1));
    let engines: Vec<Arc<dyn ScriptEngine>> = vec![Arc::new(AleEngine::new()), lua.clone()];
    (ScriptRunner::with_engines(limits, engines), lua)
}

fn run_error(runner: &ScriptRunner, language: &str, script: &str) -> ScriptError {
    let started = Instant::now();
    let error = runner
        .execute_blocking(language, script, &[], &Attributes::new())
        .expect_err("must fail");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{script}: took {:?}",
        started.elapsed()
    );
    error
}

#[test]
fn a_lua_busy_loop_fails_with_a_limit_error_within_the_deadline() {
    let limits = ScriptLimits {
        timeout: Duration::from_millis(200),
        steps: u64::MAX,
        ..ScriptLimits::default()
    };
    let runner = ScriptRunner::new(limits);
    let error = run_error(&runner, "lua", "while true do end");
    assert_eq!(error.phase, Phase::Limit(LimitKind::Time), "{error}");
    assert_eq!(error.message, "time limit exceeded (200 ms)");

    let steps = ScriptRunner::new(ScriptLimits {
        steps: 1_000_000,
        ..ScriptLimits::default()
    });
    let error = run_error(&steps, "lua", "local n = 0 while true do n = n + 1 end");
    assert_eq!(error.phase, Phase::Limit(LimitKind::Steps), "{error}");
    assert_eq!(
        error.message,
        "instruction limit exceeded (1000000 instructions)"
    );
}

#[test]
fn pcall_cannot_swallow_a_limit_error() {
    let runner = ScriptRunner::new(ScriptLimits {
        timeout: Duration::from_millis(200),
        ..ScriptLimits::default()
    });
    let error = run_error(
        &runner,
        "lua",
        "while true do pcall(function() while true do end end) end",
    );
    assert!(matches!(error.phase, Phase::Limit(_)), "{error}");
    let error = run_error(
        &runner,
        "lua",
        "while true do xpcall(function() while true do end end, print) end",
    );
    assert!(matches!(error.phase, Phase::Limit(_)), "{error}");
}

#[test]
fn ale_infinite_recursion_and_loops_fail_with_limit_errors() {
    let runner = ScriptRunner::new(ScriptLimits {
        timeout: Duration::from_millis(500),
        ..ScriptLimits::default()
    });
    let error = run_error(&runner, "ale", "((lambda-rec down (x) (+ 1 (down x))) 1)");
    assert_eq!(error.phase, Phase::Limit(LimitKind::Steps), "{error}");
    assert!(error.message.contains("recursion depth limit"), "{error}");
    let error = run_error(&runner, "ale", "((lambda-rec spin (x) (spin x)) 1)");
    assert!(
        matches!(
            error.phase,
            Phase::Limit(LimitKind::Time | LimitKind::Steps)
        ),
        "{error}"
    );
}

#[test]
fn a_lua_script_allocating_a_gibibyte_fails_with_a_memory_error() {
    let runner = ScriptRunner::new(ScriptLimits::default());
    let error = run_error(
        &runner,
        "lua",
        "local s = string.rep('x', 1024 * 1024 * 1024) return {n = #s}",
    );
    assert_eq!(error.phase, Phase::Limit(LimitKind::Memory), "{error}");
    assert_eq!(error.message, "memory limit exceeded (64 MiB)");
    let error = run_error(
        &runner,
        "lua",
        "local t = {} for i = 1, 1024 * 1024 * 128 do t[i] = i end return {n = #t}",
    );
    assert_eq!(error.phase, Phase::Limit(LimitKind::Memory), "{error}");
    // The engine is fine afterwards.
    let ok = runner
        .execute_blocking(
            "lua",
            "return {n = #string.rep('x', 1000)}",
            &[],
            &Attributes::new(),
        )
        .unwrap();
    assert_eq!(ok["n"], 1000);
}

/// `(text n)`: a string of 2ⁿ bytes, built by doubling.
const ALE_TEXT: &str = "(let-rec ([text (lambda (n) (if (= n 0) \"x\" (let [half (text (- n 1))] (str half half))))]) ";

#[test]
fn an_ale_script_holding_too_much_memory_fails_with_a_memory_error() {
    assert!(argyll_script::metering_installed());
    // Only memory may stop these scripts: the deadline is far (unoptimised builds are slow).
    let runner = ScriptRunner::new(ScriptLimits {
        timeout: Duration::from_secs(60),
        ..ScriptLimits::default()
    });
    // The issue's script: 48 strings of 32 MiB kept alive would be 1.5 GiB.
    let hoard = format!(
        "{ALE_TEXT}(let [big (text 25)] {{:n (length (seq->vector (map (lambda (i) (str big i)) (range 48))))}}))"
    );
    let error = runner
        .execute_blocking("ale", &hoard, &[], &Attributes::new())
        .expect_err("over 64 MiB");
    assert_eq!(error.phase, Phase::Limit(LimitKind::Memory), "{error}");
    assert_eq!(error.message, "memory limit exceeded (64 MiB)");
    let error = runner
        .evaluate_predicate_blocking("ale", &hoard, &[], &Attributes::new())
        .expect_err("predicates too");
    assert_eq!(error.phase, Phase::Limit(LimitKind::Memory), "{error}");

    // The runner is fine afterwards, and a script holding less than the limit runs.
    let outputs = runner
        .execute_blocking(
            "ale",
            &format!("{ALE_TEXT}{{:n (length (text 23))}})"),
            &[],
            &Attributes::new(),
        )
        .unwrap();
    assert_eq!(outputs["n"], 8 * MIB);

    // SCRIPT_MEMORY_LIMIT_MB sets the limit.
    let small = ScriptRunner::new(
        ScriptLimits::from_vars(|name| (name == "SCRIPT_MEMORY_LIMIT_MB").then(|| "4".to_owned()))
            .unwrap(),
    );
    let error = small
        .execute_blocking(
            "ale",
            &format!("{ALE_TEXT}{{:n (length (text 23))}})"),
            &[],
            &Attributes::new(),
        )
        .expect_err("8 MiB is over 4");
    assert_eq!(
        (error.phase, error.message.as_str()),
        (
            Phase::Limit(LimitKind::Memory),
            "memory limit exceeded (4 MiB)"
        )
    );

    // A memory error under a budget smaller than the real limit is handed back.
    let budget = ScriptLimits {
        memory_bytes: MIB,
        ..ScriptLimits::default()
    };
    let script = format!("{ALE_TEXT}{{:n (length (text 21))}})");
    assert_eq!(
        runner.execute_within(&budget, "ale", &script, &[], &Attributes::new()),
        None
    );
    assert_eq!(
        runner.execute_blocking("ale", &script, &[], &Attributes::new()),
        Ok(inputs(json!({"n": 2 * MIB})))
    );
}

#[test]
fn globals_set_in_one_run_are_absent_in_the_next() {
    let (runner, lua) = single_state_runner(ScriptLimits::default());
    let script = "counter = (counter or 0) + 1; _G.seen = true; return {counter = counter}";
    for _ in 0..3 {
        let outputs = runner
            .execute_blocking("lua", script, &[], &Attributes::new())
            .unwrap();
        assert_eq!(outputs["counter"], 1);
    }
    assert_eq!(lua.idle_states(), 1, "the state is reused");
    let outputs = runner
        .execute_blocking(
            "lua",
            "return {seen = seen == nil, g = _G.counter == nil}",
            &[],
            &Attributes::new(),
        )
        .unwrap();
    assert_eq!(json!(outputs), json!({"seen": true, "g": true}));
}

#[test]
fn shared_tables_cannot_be_changed_for_later_runs() {
    let (runner, lua) = single_state_runner(ScriptLimits::default());
    let error = run_error(&runner, "lua", "string.upper = nil return {}");
    assert!(
        error
            .message
            .contains("attempt to modify read-only table 'string'"),
        "{error}"
    );
    let error = run_error(&runner, "lua", "rawset(math, 'pi', 3) return {}");
    assert!(error.message.contains("read-only"), "{error}");
    let error = run_error(
        &runner,
        "lua",
        "getmetatable('').__index.upper = nil return {}",
    );
    assert!(error.message.contains("attempt to index"), "{error}");
    let error = run_error(&runner, "lua", "setmetatable(_G, nil) return {}");
    assert!(error.message.contains("protected metatable"), "{error}");
    // table.insert writes raw: allowed, but the state that saw it is not pooled again.
    runner
        .execute_blocking(
            "lua",
            "table.insert(math, 5) return {}",
            &[],
            &Attributes::new(),
        )
        .unwrap();
    assert_eq!(
        lua.idle_states(),
        0,
        "a state whose shared tables were written is dropped"
    );
    let outputs = runner
        .execute_blocking(
            "lua",
            "return {n = #math, pi = math.pi, up = ('abc'):upper()}",
            &[],
            &Attributes::new(),
        )
        .unwrap();
    assert_eq!(
        json!(outputs),
        json!({"n": 0, "pi": std::f64::consts::PI, "up": "ABC"})
    );
    // Nothing that reaches the OS or loads code is there.
    let outputs = runner
        .execute_blocking(
            "lua",
            "return {io = type(io), os = type(os), load = type(load), require = type(require), dofile = type(dofile), debug = type(debug), coroutine = type(coroutine)}",
            &[],
            &Attributes::new(),
        )
        .unwrap();
    assert!(outputs.values().all(|v| v == "nil"), "{outputs:?}");
    let error = run_error(&runner, "lua", "collectgarbage('stop') return {}");
    assert!(error.message.contains("not allowed"), "{error}");
}

#[test]
fn eight_concurrent_runs_on_a_small_pool_give_correct_results() {
    let lua = Arc::new(LuaEngine::with_pool_size(3));
    let engines: Vec<Arc<dyn ScriptEngine>> = vec![Arc::new(AleEngine::new()), lua.clone()];
    let runner = Arc::new(ScriptRunner::with_engines(ScriptLimits::default(), engines));
    let names = args(&["x"]);
    let threads: Vec<_> = (0..8)
        .map(|thread| {
            let runner = runner.clone();
            let names = names.clone();
            std::thread::spawn(move || {
                for i in 0..300 {
                    let x = thread * 1000 + i;
                    let lua = runner
                        .execute_blocking(
                            "lua",
                            "seen = (seen or 0) + x return {result = x * 3, seen = seen}",
                            &names,
                            &inputs(json!({"x": x})),
                        )
                        .unwrap();
                    assert_eq!(json!(lua), json!({"result": x * 3, "seen": x}));
                    let ale = runner
                        .execute_blocking(
                            "ale",
                            "{:result (* x 3)}",
                            &names,
                            &inputs(json!({"x": x})),
                        )
                        .unwrap();
                    assert_eq!(ale["result"], x * 3);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("no run panics");
    }
    assert!(lua.idle_states() <= 3);
}

#[test]
fn languages_errors_and_the_cache() {
    let runner = ScriptRunner::new(ScriptLimits::default());
    let error = runner.validate("python", "print(1)", &[]).unwrap_err();
    assert_eq!(
        (error.phase, error.message.as_str()),
        (Phase::Compile, "invalid script language: python")
    );
    let error = runner.validate("lua", "return {result =", &[]).unwrap_err();
    assert_eq!(error.phase, Phase::Compile);
    assert!(error.message.starts_with("syntax error: "), "{error}");
    let error = runner
        .validate("lua", "return 1", &args(&["user-id"]))
        .unwrap_err();
    assert_eq!(
        error.phase,
        Phase::Compile,
        "argument names must be Lua identifiers"
    );
    let error = runner
        .validate("ale", "{:x totl}", &args(&["total"]))
        .unwrap_err();
    assert_eq!(error.message, "name not declared in namespace: totl");

    let first = runner.compile("lua", "return x", &args(&["x"])).unwrap();
    let again = runner.compile("lua", "return x", &args(&["x"])).unwrap();
    assert!(Arc::ptr_eq(&first, &again), "compiled programs are cached");
    let other_args = runner
        .compile("lua", "return x", &args(&["x", "y"]))
        .unwrap();
    assert!(
        !Arc::ptr_eq(&first, &other_args),
        "the key includes the argument names"
    );
}

#[test]
fn outputs_that_cannot_be_json_are_errors_not_hangs() {
    let runner = ScriptRunner::new(ScriptLimits::default());
    let error = run_error(&runner, "lua", "local t = {} t.self = t return {t = t}");
    assert!(error.message.contains("nested too deeply"), "{error}");
    let error = run_error(
        &runner,
        "lua",
        "local t = {1} for i = 1, 60 do t = {t, t} end return {t = t}",
    );
    assert!(
        matches!(
            error.phase,
            Phase::Limit(LimitKind::Memory | LimitKind::Time)
        ),
        "{error}"
    );
    let small = ScriptRunner::new(ScriptLimits {
        memory_bytes: 1 << 20,
        ..ScriptLimits::default()
    });
    let error = run_error(
        &small,
        "lua",
        "local t = {1} for i = 1, 60 do t = {t, t} end return {t = t}",
    );
    assert_eq!(error.message, "output too large (more than 65536 values)");
    let error = run_error(&runner, "lua", "return {x = 0/0}");
    assert!(
        error.message.contains("cannot convert nan to JSON"),
        "{error}"
    );
    let outputs = runner
        .execute_blocking(
            "lua",
            "return {f = print, big = 2^53 + 1, half = 0.5, arr = {[1] = 'a', [2] = 'b'}, e = {}}",
            &[],
            &Attributes::new(),
        )
        .unwrap();
    assert_eq!(
        json!(outputs),
        json!({"f": null, "big": 9007199254740992_i64, "half": 0.5, "arr": ["a", "b"], "e": {}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_runs_use_the_blocking_pool() {
    // Only the clock ends the busy loop (a fast machine would otherwise spend the instruction
    // budget first).
    let runner = Arc::new(ScriptRunner::new(ScriptLimits {
        timeout: Duration::from_millis(300),
        steps: u64::MAX,
        ..ScriptLimits::default()
    }));
    let names = args(&["amount"]);
    let slow = {
        let runner = runner.clone();
        tokio::spawn(async move {
            runner
                .execute("lua", "while true do end", &[], Attributes::new())
                .await
        })
    };
    // While the busy loop occupies a blocking thread, other async work and runs proceed.
    let yes = runner
        .evaluate_predicate(
            "ale",
            "(> amount 100)",
            &names,
            inputs(json!({"amount": 150})),
        )
        .await
        .unwrap();
    let no = runner
        .evaluate_predicate(
            "lua",
            "return amount > 100",
            &names,
            inputs(json!({"amount": 50})),
        )
        .await
        .unwrap();
    assert!(yes && !no);
    let error = slow.await.unwrap().unwrap_err();
    assert_eq!(error.phase, Phase::Limit(LimitKind::Time));
}

#[test]
fn lua_patterns_work_and_deep_recursion_is_an_error() {
    let runner = ScriptRunner::new(ScriptLimits::default());
    let names = args(&["email", "csv"]);
    let script = r#"
        local user, domain = email:match("^([^@]+)@(.+)$")
        local parts = {}
        for part in csv:gmatch("[^,]+") do parts[#parts + 1] = part end
        return {user = user, domain = domain, parts = parts, dashed = (csv:gsub(",", "-")), up = ("héllo"):upper()}
    "#;
    let outputs = runner
        .execute_blocking(
            "lua",
            script,
            &names,
            &inputs(json!({"email": "ada@example.org", "csv": "a,b,c"})),
        )
        .unwrap();
    assert_eq!(
        json!(outputs),
        json!({"user": "ada", "domain": "example.org", "parts": ["a", "b", "c"], "dashed": "a-b-c", "up": "HÉLLO"})
    );
    let error = run_error(
        &runner,
        "lua",
        "local function f(n) return 1 + f(n + 1) end return f(1)",
    );
    assert_eq!(error.phase, Phase::Runtime, "{error}");
    assert!(error.message.contains("stack overflow"), "{error}");
    let error = run_error(&runner, "lua", "error('plain', 0)");
    assert_eq!(error.message, "runtime error: plain");
}

#[test]
fn execute_within_a_small_budget_answers_quick_scripts_and_hands_back_long_ones() {
    let runner = ScriptRunner::new(ScriptLimits {
        steps: 10_000_000,
        timeout: Duration::from_secs(2),
        ..ScriptLimits::default()
    });
    let budget = ScriptLimits {
        steps: 10_000,
        timeout: Duration::from_millis(5),
        ..ScriptLimits::default()
    };
    let quick = runner.execute_within(
        &budget,
        "ale",
        "{:greeting name}",
        &args(&["name"]),
        &inputs(json!({"name": "Argyll"})),
    );
    assert_eq!(quick, Some(Ok(inputs(json!({"greeting": "Argyll"})))));

    // A script error is the script's real result, whatever the budget.
    let failing = runner.execute_within(&budget, "lua", "error('boom')", &[], &Attributes::new());
    assert!(
        matches!(&failing, Some(Err(error)) if error.phase == Phase::Runtime),
        "{failing:?}"
    );

    // Beyond the budget but within the real limits: handed back, to be run elsewhere.
    let long = "local n = 0 for i = 1, 200000 do n = n + i end return {n = n}";
    assert_eq!(
        runner.execute_within(&budget, "lua", long, &[], &Attributes::new()),
        None
    );
    assert_eq!(
        runner.execute_blocking("lua", long, &[], &Attributes::new()),
        Ok(inputs(json!({"n": 20_000_100_000_i64})))
    );

    // A budget looser than the real limit changes nothing: the limit error is real.
    let tight = ScriptRunner::new(ScriptLimits {
        steps: 1_000,
        ..ScriptLimits::default()
    });
    let real = tight.execute_within(&budget, "lua", long, &[], &Attributes::new());
    assert!(
        matches!(&real, Some(Err(error)) if error.phase == Phase::Limit(LimitKind::Steps)),
        "{real:?}"
    );
}

/// Runs `work` on a thread of its own and waits at most `limit` for it: a script that escapes
/// its limits fails the test instead of hanging it.
fn within<T: Send + 'static>(limit: Duration, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(work());
    });
    result
        .recv_timeout(limit)
        .expect("the script escaped its limits and never returned")
}

/// Issue 14, item 6: Lua finalizers (`__gc`) run outside every limit (the instruction hook is
/// off while they run) and whenever the collector likes — in a later run on a pooled state, or
/// when the state is closed. Scripts cannot give an object one: `setmetatable` refuses a
/// metatable with `__gc`, and one added afterwards is ignored by Lua itself.
#[test]
fn lua_finalizers_are_refused_and_never_run() {
    let (runner, _) = single_state_runner(ScriptLimits {
        timeout: Duration::from_millis(300),
        ..ScriptLimits::default()
    });
    // Never dropped: closing a state that holds a finalizer would run it (forever) on this
    // thread, and a regression must fail the test, not hang it.
    let runner: &'static ScriptRunner = Box::leak(Box::new(runner));
    let run = |script: &'static str| {
        within(Duration::from_secs(20), move || {
            runner.execute_blocking("lua", script, &[], &Attributes::new())
        })
    };
    let error = run("setmetatable({}, {__gc = function() while true do end end}) return {}")
        .expect_err("refused");
    assert_eq!(error.phase, Phase::Runtime, "{error}");
    assert!(
        error
            .message
            .contains("setmetatable: __gc metamethods are not allowed in scripts"),
        "{error}"
    );
    // Caught by pcall, the refusal still marks nothing for finalization.
    let swallowed = run(
        "local ok = pcall(setmetatable, {}, {__gc = function() while true do end end}) \
         collectgarbage() return {ok = ok}",
    )
    .unwrap();
    assert_eq!(swallowed["ok"], json!(false));
    // A __gc added to the metatable later is not a finalizer (Lua 5.2 marks objects only in
    // setmetatable).
    let late = run("local mt = {} local t = setmetatable({}, mt) \
         mt.__gc = function() while true do end end t = nil collectgarbage() return {ok = true}")
    .unwrap();
    assert_eq!(late["ok"], json!(true));
    // The pooled state serves an unrelated script afterwards, collections included.
    let next = run("collectgarbage() return {n = 1 + 1}").unwrap();
    assert_eq!(next["n"], json!(2));
}
