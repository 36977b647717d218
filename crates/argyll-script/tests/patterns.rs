//! Our metered Lua patterns agree with C Lua 5.2's `string.find/match/gmatch/gsub`, and a
//! pathological pattern ends with a limit error instead of running for hours.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::{Duration, Instant};

use argyll_script::{Attributes, LimitKind, Phase, ScriptLimits, ScriptRunner};
use mlua::{Lua, LuaOptions, StdLib};
use proptest::prelude::*;

/// Runs every pattern function on `s` and `p` and describes the results in one string.
const PROBE: &str = r#"
local function show(ok, ...)
  if not ok then return "error" end
  local parts = {}
  for i = 1, select('#', ...) do parts[i] = tostring((select(i, ...))) end
  return table.concat(parts, "|")
end
local function all_matches()
  local out = {}
  for a, b in string.gmatch(s, p) do
    out[#out + 1] = tostring(a) .. "/" .. tostring(b)
    if #out > 40 then break end
  end
  return table.concat(out, ",")
end
return table.concat({
  show(pcall(string.find, s, p)),
  show(pcall(string.find, s, p, 2)),
  show(pcall(string.find, s, p, -2, true)),
  show(pcall(string.match, s, p)),
  show(pcall(string.gsub, s, p, "<%0>")),
  show(pcall(string.gsub, s, p, "%%", 2)),
  show(pcall(string.gsub, s, p, { a = "A", [""] = "E" })),
  show(pcall(string.gsub, s, p, function(x) return x == "b" and "B" or nil end)),
  show(pcall(all_matches)),
}, "\n")
"#;

/// 3,000 by default; `PATTERN_CASES` for a longer run.
fn cases() -> u32 {
    std::env::var("PATTERN_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000)
}

fn c_lua(s: &str, p: &str) -> String {
    let lua = Lua::new_with(StdLib::TABLE | StdLib::STRING, LuaOptions::new()).unwrap();
    lua.load(format!("local s, p = ...\n{PROBE}"))
        .call::<String>((s, p))
        .unwrap()
}

fn ours(runner: &ScriptRunner, s: &str, p: &str) -> String {
    let inputs: Attributes = serde_json::json!({"s": s, "p": p})
        .as_object()
        .cloned()
        .unwrap();
    let outputs = runner
        .execute_blocking("lua", PROBE, &["p".to_owned(), "s".to_owned()], &inputs)
        .unwrap();
    outputs["result"].as_str().unwrap().to_owned()
}

fn subject() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("a"),
            Just("b"),
            Just("("),
            Just(")"),
            Just(" "),
            Just("1"),
            Just("%"),
            Just("-")
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

fn pattern() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("a"),
        Just("b"),
        Just("."),
        Just("%a"),
        Just("%d"),
        Just("%s"),
        Just("%W"),
        Just("[ab]"),
        Just("[^a]"),
        Just("[%a-]"),
        Just("[a-c]"),
        Just("*"),
        Just("+"),
        Just("-"),
        Just("?"),
        Just("("),
        Just(")"),
        Just("()"),
        Just("%b()"),
        Just("%f[%a]"),
        Just("^"),
        Just("$"),
        Just("%1"),
        Just("%"),
        Just("["),
        Just("%%"),
        Just("%("),
    ];
    proptest::collection::vec(piece, 0..7).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn metered_patterns_agree_with_c_lua(s in subject(), p in pattern()) {
        let runner = ScriptRunner::new(ScriptLimits::default());
        prop_assert_eq!(ours(&runner, &s, &p), c_lua(&s, &p), "s = {:?}, p = {:?}", s, p);
    }
}

#[test]
fn known_cases_agree_with_c_lua() {
    let runner = ScriptRunner::new(ScriptLimits::default());
    for (s, p) in [
        ("hello world", "o w"),
        ("key = value", "(%w+)%s*=%s*(%w+)"),
        ("f(a(b)c)d", "%b()"),
        ("THE (quick) fox", "%f[%a]%a+"),
        ("abab", "(ab)%1"),
        ("abc", "x*"),
        ("abc", "^a"),
        ("abc", "c$"),
        ("a.b", "."),
        ("", ""),
        ("abc", "()"),
    ] {
        assert_eq!(ours(&runner, s, p), c_lua(s, p), "s = {s:?}, p = {p:?}");
    }
}

#[test]
fn a_pathological_pattern_hits_the_limit() {
    let runner = ScriptRunner::new(ScriptLimits {
        timeout: Duration::from_millis(300),
        ..ScriptLimits::default()
    });
    let started = Instant::now();
    let error = runner
        .execute_blocking(
            "lua",
            "return {r = string.rep('a', 20000):find('.-.-.-.-b')}",
            &[],
            &Attributes::new(),
        )
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            error.phase,
            Phase::Limit(LimitKind::Steps | LimitKind::Time)
        ),
        "{error}"
    );
    let error = runner
        .execute_blocking("lua", "local ok = pcall(string.gsub, string.rep('a', 20000), '.-.-.-b', 'x') return {ok = ok}", &[], &Attributes::new())
        .unwrap_err();
    assert!(
        matches!(error.phase, Phase::Limit(_)),
        "pcall cannot swallow it: {error}"
    );
    let big = ScriptRunner::new(ScriptLimits {
        memory_bytes: 1 << 20,
        ..ScriptLimits::default()
    });
    let error = big
        .execute_blocking(
            "lua",
            "return {n = #string.rep('a', 1000):gsub('a', string.rep('b', 10000))}",
            &[],
            &Attributes::new(),
        )
        .unwrap_err();
    assert_eq!(error.phase, Phase::Limit(LimitKind::Memory), "{error}");
}
