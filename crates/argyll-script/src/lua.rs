//! Lua 5.2 (go-lua's version) through mlua, sandboxed, limited and pooled.
//!
//! Each run gets a **fresh global table** (`_ENV`) whose misses fall through to a frozen base of
//! safe functions; library tables (`string`, `table`, `math`, `bit32`) are read-only proxies. So
//! nothing a script assigns survives into the next run, while the Lua states themselves — with
//! their loaded functions — are pooled for speed. A state whose proxies were nevertheless
//! written (through `table.insert` or `rawset`, which bypass metatables) or whose run hit a limit
//! is dropped instead of returned to the pool.
//!
//! The chunk receives its environment as the first vararg: line 1 is
//! `local _ENV = ...; local <a> = select(2, ...)`, then one `local` per further argument, so
//! script lines are numbered as in the original (which put one `local <a> = select(1, ...)` per
//! line) and error messages carry the original's chunk name.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use mlua::{
    Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value as LuaValue, VmState,
};
use serde_json::{Map, Number, Value as Json};

use crate::error::{LimitKind, ScriptError};
use crate::limits::ScriptLimits;
use crate::runner::{Attributes, CompiledScript, ScriptEngine};

/// Instructions between two budget checks; the step budget is charged in these units.
const HOOK_INTERVAL: u32 = 1000;
/// Functions a pooled state keeps loaded before it starts over.
const FUNCTIONS_PER_STATE: usize = 256;
/// JSON nesting accepted in and produced from Lua tables (serde_json reads at most 128).
const MAX_DEPTH: usize = 128;

/// The sandbox, run once per state in the real globals. Returns the metatable of every run's
/// `_ENV` and a function telling whether the shared tables are still untouched.
const SANDBOX: &str = r#"
local limit_tripped, upper, lower, find, match, gmatch, gsub = ...
local G = _G
local setmetatable, getmetatable, error, pairs, ipairs, next, tostring =
  setmetatable, getmetatable, error, pairs, ipairs, next, tostring
local function copy(t) local c = {} for k, v in pairs(t) do c[k] = v end return c end
local proxies = {}
local function readonly(lib, name)
  local proxy = setmetatable({}, {
    __index = lib,
    __newindex = function() error("attempt to modify read-only table '" .. name .. "'", 2) end,
    __metatable = false,
  })
  proxies[#proxies + 1] = proxy
  return proxy
end
local string_lib = copy(string)
string_lib.upper, string_lib.lower = upper, lower
string_lib.find, string_lib.match, string_lib.gmatch, string_lib.gsub = find, match, gmatch, gsub
local string_meta = getmetatable("")
string_meta.__index = string_lib
string_meta.__metatable = false
local math_lib = copy(math)
math_lib.huge = 1.7976931348623157e308 -- go-lua's value, which scripts written for Argyll see
local base = {}
for _, name in ipairs({"assert", "error", "getmetatable", "ipairs", "next", "pairs", "rawequal",
    "rawlen", "rawget", "select", "setmetatable", "tonumber", "tostring", "type", "_VERSION"}) do
  base[name] = G[name]
end
base.string = readonly(string_lib, "string")
base.table = readonly(copy(table), "table")
base.math = readonly(math_lib, "math")
base.bit32 = readonly(copy(bit32), "bit32")
base.print = function() end
local real_rawset = rawset
base.rawset = function(t, k, v)
  for i = 1, #proxies do
    if proxies[i] == t then error("attempt to modify a read-only table", 2) end
  end
  return real_rawset(t, k, v)
end
-- Finalizers run outside every limit: Lua 5.2 turns the instruction hook off while a __gc
-- metamethod runs, and they run whenever the collector likes (in a later, unrelated run on a
-- pooled state, or when the state is closed). So objects never get one: Lua marks an object
-- for finalization only if its metatable has __gc when setmetatable is called.
local real_rawget = rawget
base.setmetatable = function(t, mt)
  if type(mt) == "table" and real_rawget(mt, "__gc") ~= nil then
    error("setmetatable: __gc metamethods are not allowed in scripts", 2)
  end
  return setmetatable(t, mt)
end
local gc = collectgarbage
base.collectgarbage = function(opt, ...)
  if opt == nil or opt == "collect" or opt == "count" or opt == "step" then return gc(opt, ...) end
  error("collectgarbage('" .. tostring(opt) .. "') is not allowed in scripts", 2)
end
-- A limit error must not be swallowed by pcall: re-raise it once the protected call returns.
local real_pcall, real_xpcall = pcall, xpcall
local function check(...)
  if limit_tripped() then error("script limit exceeded", 0) end
  return ...
end
base.pcall = function(...) return check(real_pcall(...)) end
base.xpcall = function(...) return check(real_xpcall(...)) end
local env_meta = { __index = base, __metatable = false }
local function intact()
  for i = 1, #proxies do
    if next(proxies[i]) ~= nil then return false end
  end
  return true
end
return env_meta, intact
"#;

/// The Lua language: compiled scripts share a pool of interpreter states.
pub struct LuaEngine {
    pool: Arc<StatePool>,
}

impl Default for LuaEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl LuaEngine {
    /// An engine whose pool keeps up to twice the available parallelism of idle states.
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(4, usize::from);
        Self::with_pool_size(cores * 2)
    }

    /// An engine keeping at most `max_idle` idle states (more are created under load and
    /// dropped when returned to a full pool).
    pub fn with_pool_size(max_idle: usize) -> Self {
        LuaEngine {
            pool: Arc::new(StatePool {
                idle: Mutex::new(Vec::new()),
                max_idle,
            }),
        }
    }

    /// States currently idle in the pool.
    pub fn idle_states(&self) -> usize {
        self.pool.idle.lock().len()
    }
}

struct StatePool {
    idle: Mutex<Vec<PooledState>>,
    max_idle: usize,
}

impl StatePool {
    fn take(&self) -> Result<PooledState, ScriptError> {
        let pooled = self.idle.lock().pop();
        match pooled {
            Some(state) => Ok(state),
            None => PooledState::new(),
        }
    }

    fn give_back(&self, state: PooledState) {
        let mut idle = self.idle.lock();
        if idle.len() < self.max_idle {
            idle.push(state);
        }
    }
}

/// The budget of the current run, read by the instruction hook.
struct Budget {
    origin: Instant,
    armed: AtomicBool,
    remaining: AtomicI64,
    deadline_nanos: AtomicU64,
    /// 0: none, 1: steps, 2: time.
    tripped: AtomicU8,
    /// The run's memory limit, for buffers built outside Lua's allocator (`gsub` results).
    max_bytes: AtomicUsize,
}

impl Budget {
    fn new() -> Self {
        Budget {
            origin: Instant::now(),
            armed: AtomicBool::new(false),
            remaining: AtomicI64::new(0),
            deadline_nanos: AtomicU64::new(0),
            tripped: AtomicU8::new(0),
            max_bytes: AtomicUsize::new(usize::MAX),
        }
    }

    fn arm(&self, limits: &ScriptLimits) {
        self.remaining.store(
            i64::try_from(limits.steps).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
        let deadline = self.origin.elapsed().saturating_add(limits.timeout);
        self.deadline_nanos.store(
            u64::try_from(deadline.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.tripped.store(0, Ordering::Relaxed);
        self.max_bytes.store(limits.memory_bytes, Ordering::Relaxed);
        self.armed.store(true, Ordering::Relaxed);
    }

    fn disarm(&self) -> Option<LimitKind> {
        self.armed.store(false, Ordering::Relaxed);
        self.tripped_kind()
    }

    fn tripped_kind(&self) -> Option<LimitKind> {
        match self.tripped.load(Ordering::Relaxed) {
            1 => Some(LimitKind::Steps),
            2 => Some(LimitKind::Time),
            _ => None,
        }
    }

    /// Spends `steps` of the budget; `false` once a limit has tripped.
    fn spend(&self, steps: u32) -> bool {
        if !self.armed.load(Ordering::Relaxed) {
            return true;
        }
        if self.tripped.load(Ordering::Relaxed) == 0 {
            let steps = i64::from(steps);
            let left = self.remaining.fetch_sub(steps, Ordering::Relaxed) - steps;
            let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
            if left < 0 {
                self.tripped.store(1, Ordering::Relaxed);
            } else if now > self.deadline_nanos.load(Ordering::Relaxed) {
                self.tripped.store(2, Ordering::Relaxed);
            }
        }
        self.tripped.load(Ordering::Relaxed) == 0
    }

    fn charge(&self) -> mlua::Result<VmState> {
        if self.spend(HOOK_INTERVAL) {
            Ok(VmState::Continue)
        } else {
            Err(mlua::Error::runtime("script limit exceeded"))
        }
    }
}

struct PooledState {
    lua: Lua,
    env_meta: Table,
    intact: Function,
    budget: Arc<Budget>,
    functions: HashMap<u64, Function>,
    baseline_memory: usize,
    memory_limit: usize,
}

fn setup_error(error: mlua::Error) -> ScriptError {
    ScriptError::runtime(format!("cannot start a Lua state: {error}"))
}

impl PooledState {
    fn new() -> Result<PooledState, ScriptError> {
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::BIT,
            LuaOptions::new(),
        )
        .map_err(setup_error)?;
        let budget = Arc::new(Budget::new());
        let tripped = {
            let budget = budget.clone();
            lua.create_function(move |_, ()| Ok(budget.tripped_kind().is_some()))
                .map_err(setup_error)?
        };
        let upper = lua
            .create_function(|lua, text: mlua::String| {
                lua.create_string(change_case(&text.as_bytes(), true))
            })
            .map_err(setup_error)?;
        let lower = lua
            .create_function(|lua, text: mlua::String| {
                lua.create_string(change_case(&text.as_bytes(), false))
            })
            .map_err(setup_error)?;
        let patterns =
            crate::lua::strings::pattern_functions(&lua, &budget).map_err(setup_error)?;
        let (env_meta, intact): (Table, Function) = lua
            .load(SANDBOX)
            .set_name("=sandbox")
            .call((
                tripped, upper, lower, patterns.0, patterns.1, patterns.2, patterns.3,
            ))
            .map_err(setup_error)?;
        {
            let budget = budget.clone();
            lua.set_hook(
                HookTriggers::new().every_nth_instruction(HOOK_INTERVAL),
                move |_, _| budget.charge(),
            )
            .map_err(setup_error)?;
        }
        let baseline_memory = lua.used_memory();
        Ok(PooledState {
            lua,
            env_meta,
            intact,
            budget,
            functions: HashMap::new(),
            baseline_memory,
            memory_limit: 0,
        })
    }

    fn function(&mut self, script: &LuaScript) -> Result<Function, ScriptError> {
        if let Some(function) = self.functions.get(&script.id) {
            return Ok(function.clone());
        }
        let function = self
            .lua
            .load(script.text.as_str())
            .set_name(script.chunk_name.as_str())
            .into_function()
            .map_err(|error| classify(error, None, &ScriptLimits::default()))?;
        if self.functions.len() >= FUNCTIONS_PER_STATE {
            self.functions.clear();
        }
        self.functions.insert(script.id, function.clone());
        Ok(function)
    }

    fn call(
        &mut self,
        script: &LuaScript,
        inputs: &Attributes,
        limits: &ScriptLimits,
    ) -> Result<MultiValue, ScriptError> {
        let function = self.function(script)?;
        let wanted = self.baseline_memory.saturating_add(limits.memory_bytes);
        if self.memory_limit != wanted {
            self.lua.set_memory_limit(wanted).map_err(setup_error)?;
            self.memory_limit = wanted;
        }
        self.budget.arm(limits);
        let outcome = self.prepare_and_call(&function, script, inputs);
        let tripped = self.budget.disarm();
        outcome.map_err(|error| classify(error, tripped, limits))
    }

    fn prepare_and_call(
        &self,
        function: &Function,
        script: &LuaScript,
        inputs: &Attributes,
    ) -> mlua::Result<MultiValue> {
        let env = self.lua.create_table()?;
        env.set_metatable(Some(self.env_meta.clone()))?;
        env.raw_set("_G", &env)?;
        let mut args = Vec::with_capacity(script.arg_names.len() + 1);
        args.push(LuaValue::Table(env));
        for name in &script.arg_names {
            args.push(match inputs.get(name) {
                Some(value) => json_to_lua(&self.lua, value, 0)?,
                None => LuaValue::Nil,
            });
        }
        function.call::<MultiValue>(MultiValue::from_vec(args))
    }

    /// Whether the shared tables are as the sandbox made them.
    fn is_intact(&self) -> bool {
        self.intact.call::<bool>(()).unwrap_or(false)
    }
}

/// Unicode-aware case change, as go-lua's `strings.ToUpper`; bytes that are not UTF-8 change
/// only in their ASCII letters.
fn change_case(bytes: &[u8], upper: bool) -> Vec<u8> {
    match std::str::from_utf8(bytes) {
        Ok(text) if upper => text.to_uppercase().into_bytes(),
        Ok(text) => text.to_lowercase().into_bytes(),
        Err(_) if upper => bytes.to_ascii_uppercase(),
        Err(_) => bytes.to_ascii_lowercase(),
    }
}

/// The error of a run that outlived its deadline.
fn time_limit_error(timeout: Duration) -> ScriptError {
    ScriptError::limit(
        LimitKind::Time,
        format!("time limit exceeded ({} ms)", timeout.as_millis()),
    )
}

/// The Lua error as a script error: limits first (the message a script sees for them is
/// generic), then Lua's own message without mlua's traceback.
fn classify(error: mlua::Error, tripped: Option<LimitKind>, limits: &ScriptLimits) -> ScriptError {
    match tripped {
        Some(LimitKind::Steps) => {
            return ScriptError::limit(
                LimitKind::Steps,
                format!("instruction limit exceeded ({} instructions)", limits.steps),
            );
        }
        Some(LimitKind::Time) => return time_limit_error(limits.timeout),
        _ => {}
    }
    match error {
        mlua::Error::MemoryError(_) => ScriptError::limit(
            LimitKind::Memory,
            format!(
                "memory limit exceeded ({} MiB)",
                limits.memory_bytes / (1024 * 1024)
            ),
        ),
        mlua::Error::SyntaxError { message, .. } => {
            ScriptError::compile(format!("syntax error: {message}"))
        }
        mlua::Error::CallbackError { cause, .. } => classify((*cause).clone(), None, limits),
        mlua::Error::RuntimeError(message) => {
            let message = message
                .split("\nstack traceback:")
                .next()
                .unwrap_or_default();
            ScriptError::runtime(format!("runtime error: {message}"))
        }
        other => ScriptError::runtime(format!("runtime error: {other}")),
    }
}

/// JSON → Lua: numbers are doubles, arrays tables indexed from 1 (a JSON null leaves a hole),
/// objects tables with string keys, null nil.
fn json_to_lua(lua: &Lua, value: &Json, depth: usize) -> mlua::Result<LuaValue> {
    if depth > MAX_DEPTH {
        return Err(mlua::Error::runtime("input nested too deeply"));
    }
    Ok(match value {
        Json::Null => LuaValue::Nil,
        Json::Bool(b) => LuaValue::Boolean(*b),
        Json::Number(n) => LuaValue::Number(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => LuaValue::String(lua.create_string(s)?),
        Json::Array(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (index, item) in items.iter().enumerate() {
                if !item.is_null() {
                    table.raw_set(index + 1, json_to_lua(lua, item, depth + 1)?)?;
                }
            }
            LuaValue::Table(table)
        }
        Json::Object(map) => {
            let table = lua.create_table_with_capacity(0, map.len())?;
            for (key, item) in map {
                if !item.is_null() {
                    table.raw_set(key.as_str(), json_to_lua(lua, item, depth + 1)?)?;
                }
            }
            LuaValue::Table(table)
        }
    })
}

/// Lua → JSON within the run's budgets: tables may share or contain themselves, so a small
/// state can describe a huge output. At most one value per 16 bytes of the memory limit (a
/// table entry costs Lua at least that), and the run's deadline still applies.
struct ToJson {
    values_left: usize,
    max_values: usize,
    deadline: Instant,
    timeout: Duration,
}

impl ToJson {
    fn new(limits: &ScriptLimits, started: Instant) -> Self {
        let max_values = limits.memory_bytes / 16;
        ToJson {
            values_left: max_values,
            max_values,
            deadline: started + limits.timeout,
            timeout: limits.timeout,
        }
    }

    fn value(&mut self, value: &LuaValue, depth: usize) -> Result<Json, ScriptError> {
        self.values_left = self.values_left.checked_sub(1).ok_or_else(|| {
            ScriptError::limit(
                LimitKind::Memory,
                format!("output too large (more than {} values)", self.max_values),
            )
        })?;
        if self.values_left.is_multiple_of(1024) && Instant::now() > self.deadline {
            return Err(time_limit_error(self.timeout));
        }
        Ok(match value {
            LuaValue::Nil => Json::Null,
            LuaValue::Boolean(b) => Json::Bool(*b),
            LuaValue::Integer(i) => Json::from(*i),
            LuaValue::Number(n) => number(*n)?,
            LuaValue::String(s) => Json::String(s.to_string_lossy()),
            LuaValue::Table(table) => self.table(table, depth + 1)?,
            _ => Json::Null,
        })
    }

    /// A nested table: an array when its keys are exactly 1..n, otherwise an object with
    /// stringified keys; an empty table is `{}`.
    fn table(&mut self, table: &Table, depth: usize) -> Result<Json, ScriptError> {
        if depth > MAX_DEPTH {
            return Err(ScriptError::runtime(format!(
                "output nested too deeply for JSON (more than {MAX_DEPTH} levels)"
            )));
        }
        let entries = self.entries(table)?;
        let len = entries.len();
        let as_index = |key: &LuaValue| match key {
            LuaValue::Integer(i) => usize::try_from(*i).ok(),
            LuaValue::Number(n) if n.fract() == 0.0 && *n >= 1.0 && *n <= len as f64 => {
                Some(*n as usize)
            }
            _ => None,
        };
        let mut slots: Vec<Option<&LuaValue>> = vec![None; len];
        let is_array = len > 0
            && entries.iter().all(|(key, value)| match as_index(key) {
                Some(index) if (1..=len).contains(&index) => {
                    if let Some(slot) = slots.get_mut(index - 1) {
                        *slot = Some(value);
                    }
                    true
                }
                _ => false,
            })
            && slots.iter().all(Option::is_some);
        if is_array {
            let mut items = Vec::with_capacity(len);
            for slot in slots.into_iter().flatten() {
                items.push(self.value(slot, depth)?);
            }
            return Ok(Json::Array(items));
        }
        self.object(entries, depth).map(Json::Object)
    }

    fn entries(&mut self, table: &Table) -> Result<Vec<(LuaValue, LuaValue)>, ScriptError> {
        let mut entries = Vec::new();
        for pair in table.pairs::<LuaValue, LuaValue>() {
            let pair =
                pair.map_err(|error| ScriptError::runtime(format!("runtime error: {error}")))?;
            entries.push(pair);
        }
        Ok(entries)
    }

    fn object(
        &mut self,
        entries: Vec<(LuaValue, LuaValue)>,
        depth: usize,
    ) -> Result<Map<String, Json>, ScriptError> {
        let mut out = Map::new();
        for (key, value) in entries {
            let key = match &key {
                LuaValue::String(s) => s.to_string_lossy(),
                LuaValue::Integer(i) => i.to_string(),
                LuaValue::Number(n) => lua_number_text(*n),
                LuaValue::Boolean(b) => b.to_string(),
                _ => continue,
            };
            let value = self.value(&value, depth)?;
            out.insert(key, value);
        }
        Ok(out)
    }
}

/// A number as JSON: integral values as integers (as the original does), others as floats;
/// NaN and infinities have no JSON form.
fn number(n: f64) -> Result<Json, ScriptError> {
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    if n.fract() == 0.0 && n.abs() < TWO_POW_63 {
        return Ok(Json::from(n as i64));
    }
    Number::from_f64(n).map(Json::Number).ok_or_else(|| {
        ScriptError::runtime(format!("cannot convert {} to JSON", lua_number_text(n)))
    })
}

/// Lua 5.2's `tostring` of a number (`%.14g`) for the cases that matter for keys.
fn lua_number_text(n: f64) -> String {
    if n.is_nan() {
        return "nan".to_owned();
    }
    if n.is_infinite() {
        return if n > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if n.fract() == 0.0 && n.abs() < 1e15 {
        return format!("{}", n as i64);
    }
    format!("{n}")
}

/// A compiled Lua script: the full source text, loaded lazily into each pooled state.
struct LuaScript {
    id: u64,
    text: String,
    chunk_name: String,
    arg_names: Vec<String>,
    pool: Arc<StatePool>,
}

impl LuaScript {
    fn run<R>(
        &self,
        inputs: &Attributes,
        limits: &ScriptLimits,
        finish: impl FnOnce(MultiValue, &ScriptLimits, Instant) -> Result<R, ScriptError>,
    ) -> Result<R, ScriptError> {
        let started = Instant::now();
        let mut state = self.pool.take()?;
        let outcome = state
            .call(self, inputs, limits)
            .and_then(|values| finish(values, limits, started));
        let hit_limit =
            matches!(&outcome, Err(error) if matches!(error.phase, crate::Phase::Limit(_)));
        if !hit_limit && state.is_intact() {
            self.pool.give_back(state);
        }
        outcome
    }
}

impl CompiledScript for LuaScript {
    fn execute(
        &self,
        inputs: &Attributes,
        limits: &ScriptLimits,
    ) -> Result<Attributes, ScriptError> {
        self.run(inputs, limits, |values, limits, started| {
            let mut converter = ToJson::new(limits, started);
            match values.into_iter().next() {
                Some(LuaValue::Table(table)) => {
                    let entries = converter.entries(&table)?;
                    converter.object(entries, 1)
                }
                Some(other) => {
                    let mut outputs = Map::new();
                    outputs.insert("result".to_owned(), converter.value(&other, 0)?);
                    Ok(outputs)
                }
                None => {
                    let mut outputs = Map::new();
                    outputs.insert("result".to_owned(), Json::Null);
                    Ok(outputs)
                }
            }
        })
    }

    fn evaluate_predicate(
        &self,
        inputs: &Attributes,
        limits: &ScriptLimits,
    ) -> Result<bool, ScriptError> {
        self.run(inputs, limits, |values, _, _| {
            Ok(!matches!(
                values.into_iter().next(),
                None | Some(LuaValue::Nil | LuaValue::Boolean(false))
            ))
        })
    }
}

static NEXT_SCRIPT_ID: AtomicU64 = AtomicU64::new(1);

impl ScriptEngine for LuaEngine {
    fn language(&self) -> &'static str {
        "lua"
    }

    fn compile(
        &self,
        source: &str,
        arg_names: &[String],
    ) -> Result<Arc<dyn CompiledScript>, ScriptError> {
        let mut prelude: Vec<String> = Vec::with_capacity(arg_names.len().max(1));
        let mut original_first_line = String::new();
        for (index, name) in arg_names.iter().enumerate() {
            let local = format!("local {name} = select({}, ...)", index + 2);
            if index == 0 {
                original_first_line = format!("local {name} = select(1, ...)");
                prelude.push(format!("local _ENV = ...; {local}"));
            } else {
                prelude.push(local);
            }
        }
        if prelude.is_empty() {
            prelude.push("local _ENV = ...".to_owned());
        }
        let script = LuaScript {
            id: NEXT_SCRIPT_ID.fetch_add(1, Ordering::Relaxed),
            text: format!("{}\n{source}", prelude.join("\n")),
            chunk_name: format!("=[string \"{original_first_line}\"]"),
            arg_names: arg_names.to_vec(),
            pool: self.pool.clone(),
        };
        // Compile now, so that syntax errors (including argument names that are not Lua
        // identifiers) surface at registration.
        let mut state = self.pool.take()?;
        let loaded = state.function(&script);
        self.pool.give_back(state);
        loaded?;
        Ok(Arc::new(script))
    }
}

/// `string.find`, `match`, `gmatch` and `gsub` over [`crate::lua_pattern`], metered by the run's
/// budget.
mod strings {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use mlua::{Function, Lua, MultiValue, Value as LuaValue};

    use parking_lot::Mutex;

    use super::Budget;
    use crate::lua_pattern::{self, Capture, Found, Meter, PatternError};

    struct BudgetMeter<'a>(&'a Budget);

    impl Meter for BudgetMeter<'_> {
        fn spend(&mut self, steps: u32) -> bool {
            self.0.spend(steps)
        }
    }

    fn pattern_error(error: PatternError) -> mlua::Error {
        match error {
            PatternError::Message(message) => mlua::Error::runtime(message),
            PatternError::Limit | PatternError::Stopped => {
                mlua::Error::runtime("script limit exceeded")
            }
        }
    }

    fn bytes_arg(
        lua: &Lua,
        value: LuaValue,
        position: usize,
        function: &str,
    ) -> mlua::Result<Vec<u8>> {
        let type_name = value.type_name();
        match lua.coerce_string(value)? {
            Some(text) => Ok(text.as_bytes().to_vec()),
            None => Err(mlua::Error::runtime(format!(
                "bad argument #{position} to '{function}' (string expected, got {type_name})"
            ))),
        }
    }

    fn integer_arg(
        lua: &Lua,
        value: Option<LuaValue>,
        default: i64,
        position: usize,
        function: &str,
    ) -> mlua::Result<i64> {
        match value {
            None | Some(LuaValue::Nil) => Ok(default),
            Some(value) => {
                let type_name = value.type_name();
                match lua.coerce_number(value)? {
                    Some(n) if n.is_finite() => Ok(n as i64),
                    Some(_) => Ok(default),
                    None => Err(mlua::Error::runtime(format!(
                        "bad argument #{position} to '{function}' (number expected, got {type_name})"
                    ))),
                }
            }
        }
    }

    fn capture_value(lua: &Lua, capture: Capture) -> mlua::Result<LuaValue> {
        Ok(match capture {
            Capture::Text(bytes) => LuaValue::String(lua.create_string(bytes)?),
            Capture::Position(position) => LuaValue::Number(position as f64),
        })
    }

    fn values(lua: &Lua, captures: Vec<Capture>) -> mlua::Result<MultiValue> {
        captures
            .into_iter()
            .map(|c| capture_value(lua, c))
            .collect()
    }

    fn find_or_match(
        lua: &Lua,
        budget: &Budget,
        args: MultiValue,
        find: bool,
    ) -> mlua::Result<MultiValue> {
        let name = if find { "find" } else { "match" };
        let mut args = args.into_iter();
        let src = bytes_arg(lua, args.next().unwrap_or(LuaValue::Nil), 1, name)?;
        let pat = bytes_arg(lua, args.next().unwrap_or(LuaValue::Nil), 2, name)?;
        let init = integer_arg(lua, args.next(), 1, 3, name)?;
        let plain = find
            && !matches!(
                args.next(),
                None | Some(LuaValue::Nil | LuaValue::Boolean(false))
            );
        let found = lua_pattern::find(&mut BudgetMeter(budget), &src, &pat, init, plain, find)
            .map_err(pattern_error)?;
        match found {
            Found::Nothing => Ok(MultiValue::from_vec(vec![LuaValue::Nil])),
            Found::Span(start, end, captures) => {
                let mut out = vec![LuaValue::Number(start as f64), LuaValue::Number(end as f64)];
                out.extend(values(lua, captures)?);
                Ok(MultiValue::from_vec(out))
            }
            Found::Captures(captures) => values(lua, captures),
        }
    }

    /// The text a replacement adds, or `None` to keep the match.
    fn replacement_text(
        lua: &Lua,
        repl: &LuaValue,
        src: &[u8],
        m: &lua_pattern::Replacement,
    ) -> mlua::Result<Option<Vec<u8>>> {
        let whole = || src.get(m.start..m.end).unwrap_or_default().to_vec();
        let value = match repl {
            LuaValue::Table(table) => {
                let key = match m.captures.first() {
                    Some(Ok(capture)) => capture_value(lua, capture.clone())?,
                    Some(Err(error)) => return Err(pattern_error(error.clone())),
                    None => LuaValue::String(lua.create_string(whole())?),
                };
                table.get::<LuaValue>(key)?
            }
            LuaValue::Function(function) => {
                let captures = m
                    .captures
                    .iter()
                    .cloned()
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(pattern_error)?;
                function.call::<LuaValue>(values(lua, captures)?)?
            }
            template => {
                let template = bytes_arg(lua, template.clone(), 3, "gsub")?;
                let mut out = Vec::with_capacity(template.len());
                let mut bytes = template.iter();
                while let Some(&c) = bytes.next() {
                    if c != b'%' {
                        out.push(c);
                        continue;
                    }
                    match bytes.next() {
                        Some(&d) if d.is_ascii_digit() => {
                            if d == b'0' {
                                out.extend(whole());
                            } else {
                                let index = usize::from(d - b'1');
                                match m.captures.get(index) {
                                    Some(Ok(Capture::Text(text))) => out.extend(text),
                                    Some(Ok(Capture::Position(position))) => {
                                        out.extend(position.to_string().bytes())
                                    }
                                    Some(Err(error)) => return Err(pattern_error(error.clone())),
                                    None => {
                                        return Err(mlua::Error::runtime("invalid capture index"));
                                    }
                                }
                            }
                        }
                        Some(&b'%') => out.push(b'%'),
                        _ => {
                            return Err(mlua::Error::runtime(
                                "invalid use of '%' in replacement string",
                            ));
                        }
                    }
                }
                return Ok(Some(out));
            }
        };
        match value {
            LuaValue::Nil | LuaValue::Boolean(false) => Ok(None),
            value @ (LuaValue::String(_) | LuaValue::Number(_) | LuaValue::Integer(_)) => {
                Ok(lua.coerce_string(value)?.map(|s| s.as_bytes().to_vec()))
            }
            other => Err(mlua::Error::runtime(format!(
                "invalid replacement value (a {})",
                other.type_name()
            ))),
        }
    }

    fn gsub(lua: &Lua, budget: &Budget, args: MultiValue) -> mlua::Result<(mlua::String, f64)> {
        let mut args = args.into_iter();
        let src = bytes_arg(lua, args.next().unwrap_or(LuaValue::Nil), 1, "gsub")?;
        let pat = bytes_arg(lua, args.next().unwrap_or(LuaValue::Nil), 2, "gsub")?;
        let repl = args.next().unwrap_or(LuaValue::Nil);
        if !matches!(
            repl,
            LuaValue::String(_)
                | LuaValue::Number(_)
                | LuaValue::Integer(_)
                | LuaValue::Table(_)
                | LuaValue::Function(_)
        ) {
            return Err(mlua::Error::runtime(format!(
                "bad argument #3 to 'gsub' (string/function/table expected, got {})",
                repl.type_name()
            )));
        }
        let default_max = i64::try_from(src.len())
            .unwrap_or(i64::MAX)
            .saturating_add(1);
        let max =
            usize::try_from(integer_arg(lua, args.next(), default_max, 4, "gsub")?).unwrap_or(0);
        let max_bytes = budget.max_bytes.load(Ordering::Relaxed);
        let mut out: Vec<u8> = Vec::new();
        let mut copied_to = 0;
        let mut failure: Option<mlua::Error> = None;
        let outcome =
            lua_pattern::substitutions(&mut BudgetMeter(budget), &src, &pat, max, &mut |m| {
                out.extend(src.get(copied_to..m.start).unwrap_or_default());
                match replacement_text(lua, &repl, &src, &m) {
                    Ok(Some(text)) => out.extend(text),
                    Ok(None) => out.extend(src.get(m.start..m.end).unwrap_or_default()),
                    Err(error) => {
                        failure = Some(error);
                        return false;
                    }
                }
                copied_to = m.end;
                if out.len() > max_bytes {
                    failure = Some(mlua::Error::MemoryError(
                        "gsub result exceeds the memory limit".into(),
                    ));
                    return false;
                }
                true
            });
        if let Some(error) = failure {
            return Err(error);
        }
        let count = outcome.map_err(pattern_error)?;
        out.extend(src.get(copied_to..).unwrap_or_default());
        Ok((lua.create_string(out)?, count as f64))
    }

    /// The four functions, each holding the state's budget.
    pub(super) fn pattern_functions(
        lua: &Lua,
        budget: &Arc<Budget>,
    ) -> mlua::Result<(Function, Function, Function, Function)> {
        let find = {
            let budget = budget.clone();
            lua.create_function(move |lua, args: MultiValue| {
                find_or_match(lua, &budget, args, true)
            })?
        };
        let match_ = {
            let budget = budget.clone();
            lua.create_function(move |lua, args: MultiValue| {
                find_or_match(lua, &budget, args, false)
            })?
        };
        let gmatch = {
            let budget = budget.clone();
            lua.create_function(move |lua, args: MultiValue| {
                let mut args = args.into_iter();
                let src = bytes_arg(lua, args.next().unwrap_or(LuaValue::Nil), 1, "gmatch")?;
                let pat = bytes_arg(lua, args.next().unwrap_or(LuaValue::Nil), 2, "gmatch")?;
                let position = Mutex::new(0usize);
                let budget = budget.clone();
                lua.create_function(move |lua, ()| {
                    let mut position = position.lock();
                    match lua_pattern::next_match(
                        &mut BudgetMeter(&budget),
                        &src,
                        &pat,
                        &mut position,
                    )
                    .map_err(pattern_error)?
                    {
                        Some(captures) => values(lua, captures),
                        None => Ok(MultiValue::from_vec(vec![LuaValue::Nil])),
                    }
                })
            })?
        };
        let gsub = {
            let budget = budget.clone();
            lua.create_function(move |lua, args: MultiValue| gsub(lua, &budget, args))?
        };
        Ok((find, match_, gmatch, gsub))
    }
}

impl std::fmt::Debug for LuaEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LuaEngine")
            .field("max_idle_states", &self.pool.max_idle)
            .finish_non_exhaustive()
    }
}
