//! Lua 5.2 patterns (`string.find`, `match`, `gmatch`, `gsub`) with every matching step charged
//! to the run's budget.
//!
//! C Lua's matcher backtracks without executing VM instructions, so the instruction hook cannot
//! stop it: `("a"):rep(1e5):find(".-.-.-b")` would run for hours. This is a port of the matcher
//! of Lua 5.2's `lstrlib.c` (same semantics, same error messages) that counts its steps, so a
//! pathological pattern ends with the run's step or time limit like any other busy script.

/// Why matching stopped early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PatternError {
    /// A malformed pattern or bad capture, with Lua's message.
    Message(String),
    /// The run's budget is exhausted.
    Limit,
    /// The caller's match handler stopped the search (it keeps its own reason).
    Stopped,
}

/// Charges matching steps to the run's budget, in batches.
pub(crate) trait Meter {
    /// Spends `steps`; `false` when the budget (steps or time) is exhausted.
    fn spend(&mut self, steps: u32) -> bool;
}

const MAX_CAPTURES: usize = 32;
const MAX_CALLS: usize = 200;
const ESCAPE: u8 = b'%';
const SPECIALS: &[u8] = b"^$*+?.([%-";
const BATCH: u32 = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CaptureLen {
    Unfinished,
    Position,
    Len(usize),
}

/// A capture of a successful match.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Capture {
    /// Matched bytes.
    Text(Vec<u8>),
    /// A position capture `()`: a 1-based index.
    Position(usize),
}

struct MatchState<'a, M: Meter> {
    src: &'a [u8],
    pat: &'a [u8],
    level: usize,
    depth_left: usize,
    captures: [(usize, CaptureLen); MAX_CAPTURES],
    meter: &'a mut M,
    pending: u32,
}

type Step = Result<Option<usize>, PatternError>;

fn message(text: impl Into<String>) -> PatternError {
    PatternError::Message(text.into())
}

fn at(bytes: &[u8], index: usize) -> u8 {
    bytes.get(index).copied().unwrap_or(0)
}

fn class_matches(c: u8, class: u8) -> bool {
    let result = match class.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'g' => c.is_ascii_graphic(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        b's' => matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c),
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        b'z' => c == 0,
        _ => return class == c,
    };
    if class.is_ascii_lowercase() {
        result
    } else {
        !result
    }
}

impl<'a, M: Meter> MatchState<'a, M> {
    fn new(src: &'a [u8], pat: &'a [u8], meter: &'a mut M) -> Self {
        MatchState {
            src,
            pat,
            level: 0,
            depth_left: MAX_CALLS,
            captures: [(0, CaptureLen::Unfinished); MAX_CAPTURES],
            meter,
            pending: 0,
        }
    }

    fn reset(&mut self) {
        self.level = 0;
        self.depth_left = MAX_CALLS;
    }

    fn tick(&mut self) -> Result<(), PatternError> {
        self.pending += 1;
        if self.pending >= BATCH {
            self.pending = 0;
            if !self.meter.spend(BATCH) {
                return Err(PatternError::Limit);
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), PatternError> {
        let pending = std::mem::take(&mut self.pending);
        if pending > 0 && !self.meter.spend(pending) {
            return Err(PatternError::Limit);
        }
        Ok(())
    }

    fn class_end(&self, mut p: usize) -> Result<usize, PatternError> {
        let c = at(self.pat, p);
        p += 1;
        match c {
            ESCAPE => {
                if p >= self.pat.len() {
                    return Err(message("malformed pattern (ends with '%')"));
                }
                Ok(p + 1)
            }
            b'[' => {
                if at(self.pat, p) == b'^' {
                    p += 1;
                }
                loop {
                    if p >= self.pat.len() {
                        return Err(message("malformed pattern (missing ']')"));
                    }
                    let c = at(self.pat, p);
                    p += 1;
                    if c == ESCAPE && p < self.pat.len() {
                        p += 1;
                    }
                    if at(self.pat, p) == b']' {
                        return Ok(p + 1);
                    }
                }
            }
            _ => Ok(p),
        }
    }

    /// `p` is at the `[`, `ec` at the closing `]`.
    fn bracket_class_matches(&self, c: u8, mut p: usize, ec: usize) -> bool {
        let mut sig = true;
        if at(self.pat, p + 1) == b'^' {
            sig = false;
            p += 1;
        }
        loop {
            p += 1;
            if p >= ec {
                return !sig;
            }
            if at(self.pat, p) == ESCAPE {
                p += 1;
                if class_matches(c, at(self.pat, p)) {
                    return sig;
                }
            } else if at(self.pat, p + 1) == b'-' && p + 2 < ec {
                p += 2;
                if at(self.pat, p - 2) <= c && c <= at(self.pat, p) {
                    return sig;
                }
            } else if at(self.pat, p) == c {
                return sig;
            }
        }
    }

    fn single_match(&self, s: usize, p: usize, ep: usize) -> bool {
        if s >= self.src.len() {
            return false;
        }
        let c = at(self.src, s);
        match at(self.pat, p) {
            b'.' => true,
            ESCAPE => class_matches(c, at(self.pat, p + 1)),
            b'[' => self.bracket_class_matches(c, p, ep - 1),
            other => other == c,
        }
    }

    fn do_match(&mut self, s: usize, p: usize) -> Step {
        if self.depth_left == 0 {
            return Err(message("pattern too complex"));
        }
        self.depth_left -= 1;
        let result = crate::lua_pattern::grow(|| self.match_here(s, p));
        self.depth_left += 1;
        result
    }

    fn match_here(&mut self, mut s: usize, mut p: usize) -> Step {
        loop {
            self.tick()?;
            if p >= self.pat.len() {
                return Ok(Some(s));
            }
            match at(self.pat, p) {
                b'(' => {
                    return if at(self.pat, p + 1) == b')' {
                        self.start_capture(s, p + 2, CaptureLen::Position)
                    } else {
                        self.start_capture(s, p + 1, CaptureLen::Unfinished)
                    };
                }
                b')' => return self.end_capture(s, p + 1),
                b'$' if p + 1 == self.pat.len() => {
                    return Ok((s == self.src.len()).then_some(s));
                }
                ESCAPE if at(self.pat, p + 1) == b'b' => match self.match_balance(s, p + 2)? {
                    Some(end) => {
                        s = end;
                        p += 4;
                        continue;
                    }
                    None => return Ok(None),
                },
                ESCAPE if at(self.pat, p + 1) == b'f' => {
                    p += 2;
                    if at(self.pat, p) != b'[' {
                        return Err(message("missing '[' after '%f' in pattern"));
                    }
                    let ep = self.class_end(p)?;
                    let previous = if s == 0 { 0 } else { at(self.src, s - 1) };
                    if !self.bracket_class_matches(previous, p, ep - 1)
                        && self.bracket_class_matches(at(self.src, s), p, ep - 1)
                    {
                        p = ep;
                        continue;
                    }
                    return Ok(None);
                }
                ESCAPE if at(self.pat, p + 1).is_ascii_digit() => {
                    match self.match_capture(s, at(self.pat, p + 1))? {
                        Some(end) => {
                            s = end;
                            p += 2;
                            continue;
                        }
                        None => return Ok(None),
                    }
                }
                _ => {
                    let ep = self.class_end(p)?;
                    let quantifier = if ep < self.pat.len() {
                        at(self.pat, ep)
                    } else {
                        0
                    };
                    if !self.single_match(s, p, ep) {
                        if matches!(quantifier, b'*' | b'?' | b'-') {
                            p = ep + 1;
                            continue;
                        }
                        return Ok(None);
                    }
                    match quantifier {
                        b'?' => match self.do_match(s + 1, ep + 1)? {
                            Some(end) => return Ok(Some(end)),
                            None => {
                                p = ep + 1;
                                continue;
                            }
                        },
                        b'+' => return self.max_expand(s + 1, p, ep),
                        b'*' => return self.max_expand(s, p, ep),
                        b'-' => return self.min_expand(s, p, ep),
                        _ => {
                            s += 1;
                            p = ep;
                        }
                    }
                }
            }
        }
    }

    fn max_expand(&mut self, s: usize, p: usize, ep: usize) -> Step {
        let mut count = 0;
        while self.single_match(s + count, p, ep) {
            self.tick()?;
            count += 1;
        }
        loop {
            if let Some(end) = self.do_match(s + count, ep + 1)? {
                return Ok(Some(end));
            }
            if count == 0 {
                return Ok(None);
            }
            count -= 1;
        }
    }

    fn min_expand(&mut self, mut s: usize, p: usize, ep: usize) -> Step {
        loop {
            if let Some(end) = self.do_match(s, ep + 1)? {
                return Ok(Some(end));
            }
            if self.single_match(s, p, ep) {
                s += 1;
            } else {
                return Ok(None);
            }
        }
    }

    fn start_capture(&mut self, s: usize, p: usize, what: CaptureLen) -> Step {
        let level = self.level;
        let slot = self
            .captures
            .get_mut(level)
            .ok_or_else(|| message("too many captures"))?;
        *slot = (s, what);
        self.level = level + 1;
        let result = self.do_match(s, p)?;
        if result.is_none() {
            self.level -= 1;
        }
        Ok(result)
    }

    fn end_capture(&mut self, s: usize, p: usize) -> Step {
        let open = (0..self.level)
            .rev()
            .find(|&l| {
                self.captures
                    .get(l)
                    .is_some_and(|c| c.1 == CaptureLen::Unfinished)
            })
            .ok_or_else(|| message("invalid pattern capture"))?;
        if let Some(capture) = self.captures.get_mut(open) {
            capture.1 = CaptureLen::Len(s - capture.0);
        }
        let result = self.do_match(s, p)?;
        if result.is_none()
            && let Some(capture) = self.captures.get_mut(open)
        {
            capture.1 = CaptureLen::Unfinished;
        }
        Ok(result)
    }

    fn match_balance(&mut self, s: usize, p: usize) -> Step {
        if p + 1 >= self.pat.len() {
            return Err(message("malformed pattern (missing arguments to '%b')"));
        }
        if s >= self.src.len() || at(self.src, s) != at(self.pat, p) {
            return Ok(None);
        }
        let (open, close) = (at(self.pat, p), at(self.pat, p + 1));
        let mut depth = 1;
        let mut s = s;
        loop {
            s += 1;
            if s >= self.src.len() {
                return Ok(None);
            }
            self.tick()?;
            let c = at(self.src, s);
            if c == close {
                depth -= 1;
                if depth == 0 {
                    return Ok(Some(s + 1));
                }
            } else if c == open {
                depth += 1;
            }
        }
    }

    fn match_capture(&mut self, s: usize, digit: u8) -> Step {
        let index = self.check_capture(digit)?;
        // A position capture has no text; C Lua's length check fails for it, so no match.
        let Some(&(init, CaptureLen::Len(len))) = self.captures.get(index) else {
            return Ok(None);
        };
        let wanted = self.src.get(init..init + len);
        let here = self.src.get(s..s + len);
        Ok((wanted.is_some() && wanted == here).then_some(s + len))
    }

    fn check_capture(&self, digit: u8) -> Result<usize, PatternError> {
        let index = usize::from(digit).wrapping_sub(usize::from(b'1'));
        match self.captures.get(index) {
            Some((_, len)) if index < self.level && *len != CaptureLen::Unfinished => Ok(index),
            _ => Err(message(format!(
                "invalid capture index %{}",
                i32::from(digit) - i32::from(b'0')
            ))),
        }
    }

    /// Capture `index` of the match `s..e` (the whole match when there are no captures).
    fn capture(&self, index: usize, s: usize, e: usize) -> Result<Capture, PatternError> {
        if index >= self.level {
            if index == 0 {
                return Ok(Capture::Text(
                    self.src.get(s..e).unwrap_or_default().to_vec(),
                ));
            }
            return Err(message("invalid capture index"));
        }
        match self.captures.get(index) {
            Some(&(init, CaptureLen::Len(len))) => Ok(Capture::Text(
                self.src.get(init..init + len).unwrap_or_default().to_vec(),
            )),
            Some(&(init, CaptureLen::Position)) => Ok(Capture::Position(init + 1)),
            _ => Err(message("unfinished capture")),
        }
    }

    fn captures(
        &self,
        s: usize,
        e: usize,
        whole_if_none: bool,
    ) -> Result<Vec<Capture>, PatternError> {
        let count = if self.level == 0 && whole_if_none {
            1
        } else {
            self.level
        };
        (0..count).map(|index| self.capture(index, s, e)).collect()
    }
}

/// Runs `f` with enough native stack for the matcher's recursion (at most 200 levels deep).
fn grow<T>(f: impl FnOnce() -> T) -> T {
    stacker::maybe_grow(64 * 1024, 1024 * 1024, f)
}

/// Lua's `posrelat`: a 1-based, possibly negative position into a string of `len` bytes.
fn relative_position(position: i64, len: usize) -> i64 {
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    if position >= 0 {
        position
    } else if position.unsigned_abs() > len.unsigned_abs() {
        0
    } else {
        len + position + 1
    }
}

/// A leading `^` anchors the match at the start position; the rest is the pattern proper.
fn split_anchor(pat: &[u8]) -> (bool, &[u8]) {
    match pat.split_first() {
        Some((b'^', rest)) => (true, rest),
        _ => (false, pat),
    }
}

/// What `find` or `match` returns.
#[derive(Debug, PartialEq)]
pub(crate) enum Found {
    /// No match.
    Nothing,
    /// `find`: 1-based start and end, then the captures.
    Span(usize, usize, Vec<Capture>),
    /// `match`: the captures (the whole match when the pattern has none).
    Captures(Vec<Capture>),
}

/// `string.find` (`find = true`) and `string.match`.
pub(crate) fn find<M: Meter>(
    meter: &mut M,
    src: &[u8],
    pat: &[u8],
    init: i64,
    plain: bool,
    find: bool,
) -> Result<Found, PatternError> {
    let init = relative_position(init, src.len()).max(1);
    let Ok(start) = usize::try_from(init - 1) else {
        return Ok(Found::Nothing);
    };
    if start > src.len() {
        return Ok(Found::Nothing);
    }
    if find && (plain || !pat.iter().any(|c| SPECIALS.contains(c))) {
        let found = if pat.is_empty() {
            Some(start)
        } else {
            src.get(start..)
                .and_then(|rest| rest.windows(pat.len()).position(|window| window == pat))
                .map(|offset| start + offset)
        };
        return Ok(match found {
            Some(at) => Found::Span(at + 1, at + pat.len(), Vec::new()),
            None => Found::Nothing,
        });
    }
    let (anchor, body) = split_anchor(pat);
    let mut state = MatchState::new(src, body, meter);
    let mut s = start;
    loop {
        state.reset();
        if let Some(e) = state.do_match(s, 0)? {
            state.finish()?;
            return Ok(if find {
                Found::Span(s + 1, e, state.captures(s, e, false)?)
            } else {
                Found::Captures(state.captures(s, e, true)?)
            });
        }
        s += 1;
        if s > src.len() || anchor {
            state.finish()?;
            return Ok(Found::Nothing);
        }
    }
}

/// One step of `gmatch`: the captures of the next match at or after `*position` (0-based),
/// advancing `*position` past it.
pub(crate) fn next_match<M: Meter>(
    meter: &mut M,
    src: &[u8],
    pat: &[u8],
    position: &mut usize,
) -> Result<Option<Vec<Capture>>, PatternError> {
    let mut state = MatchState::new(src, pat, meter);
    let mut s = *position;
    while s <= src.len() {
        state.reset();
        if let Some(e) = state.do_match(s, 0)? {
            *position = if e == s { e + 1 } else { e };
            let captures = state.captures(s, e, true)?;
            state.finish()?;
            return Ok(Some(captures));
        }
        s += 1;
    }
    *position = s;
    state.finish()?;
    Ok(None)
}

/// One match found by `gsub`: where it is and its captures (the whole match when none).
pub(crate) struct Replacement {
    /// 0-based start.
    pub(crate) start: usize,
    /// 0-based end (exclusive).
    pub(crate) end: usize,
    /// The captures (or the whole match), each an error when unusable: Lua only fails on an
    /// unfinished capture if the replacement uses it.
    pub(crate) captures: Vec<Result<Capture, PatternError>>,
}

/// Hands the matches `gsub` replaces, at most `max` of them and in order, to `on_match`
/// (which returns `false` to stop with [`PatternError::Stopped`]). Returns how many there were.
pub(crate) fn substitutions<M: Meter>(
    meter: &mut M,
    src: &[u8],
    pat: &[u8],
    max: usize,
    on_match: &mut dyn FnMut(Replacement) -> bool,
) -> Result<usize, PatternError> {
    let (anchor, body) = split_anchor(pat);
    let mut state = MatchState::new(src, body, meter);
    let mut count = 0;
    let mut s = 0;
    while count < max {
        state.reset();
        match state.do_match(s, 0)? {
            Some(e) => {
                count += 1;
                let captures = (0..state.level.max(1))
                    .map(|index| state.capture(index, s, e))
                    .collect();
                if !on_match(Replacement {
                    start: s,
                    end: e,
                    captures,
                }) {
                    return Err(PatternError::Stopped);
                }
                if e > s {
                    s = e;
                } else if s < src.len() {
                    s += 1;
                } else {
                    break;
                }
            }
            None if s < src.len() => s += 1,
            None => break,
        }
        if anchor {
            break;
        }
    }
    state.finish()?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    struct Unlimited;
    impl Meter for Unlimited {
        fn spend(&mut self, _: u32) -> bool {
            true
        }
    }

    struct Limited(u64);
    impl Meter for Limited {
        fn spend(&mut self, steps: u32) -> bool {
            self.0 = self.0.saturating_sub(u64::from(steps));
            self.0 > 0
        }
    }

    fn text(s: &str) -> Capture {
        Capture::Text(s.as_bytes().to_vec())
    }

    #[test]
    fn find_and_match_follow_lua() {
        let m = &mut Unlimited;
        assert_eq!(
            find(m, b"hello world", b"o w", 1, false, true).unwrap(),
            Found::Span(5, 7, vec![])
        );
        assert_eq!(
            find(m, b"hello", b"l+", 1, false, true).unwrap(),
            Found::Span(3, 4, vec![])
        );
        assert_eq!(
            find(m, b"key = value", b"(%w+)%s*=%s*(%w+)", 1, false, false).unwrap(),
            Found::Captures(vec![text("key"), text("value")])
        );
        assert_eq!(
            find(m, b"abc", b"()b()", 1, false, false).unwrap(),
            Found::Captures(vec![Capture::Position(2), Capture::Position(3)])
        );
        assert_eq!(
            find(m, b"f(a(b)c)d", b"%b()", 1, false, false).unwrap(),
            Found::Captures(vec![text("(a(b)c)")])
        );
        assert_eq!(
            find(m, b"THE (quick) fox", b"%f[%a]%a+", 5, false, false).unwrap(),
            Found::Captures(vec![text("quick")])
        );
        assert_eq!(
            find(m, b"abab", b"(ab)%1", 1, false, false).unwrap(),
            Found::Captures(vec![text("ab")])
        );
        assert_eq!(
            find(m, b"abc", b"^b", 1, false, true).unwrap(),
            Found::Nothing
        );
        assert_eq!(
            find(m, b"abc", b"c$", -1, false, true).unwrap(),
            Found::Span(3, 3, vec![])
        );
        assert_eq!(
            find(m, b"a.b", b".", 1, true, true).unwrap(),
            Found::Span(2, 2, vec![])
        );
        assert_eq!(
            find(m, b"abc", b"", 10, false, true).unwrap(),
            Found::Nothing
        );
    }

    #[test]
    fn malformed_patterns_are_lua_errors() {
        let error = |pat: &[u8]| {
            find(&mut Unlimited, b"abc", pat, 1, false, true)
                .expect_err(&String::from_utf8_lossy(pat))
        };
        assert_eq!(error(b"%"), message("malformed pattern (ends with '%')"));
        assert_eq!(error(b"[a"), message("malformed pattern (missing ']')"));
        assert_eq!(error(b"(a"), message("unfinished capture"));
        assert_eq!(error(b"a)."), message("invalid pattern capture"));
        assert_eq!(error(b"%1"), message("invalid capture index %1"));
        assert_eq!(
            error(b"%b"),
            message("malformed pattern (missing arguments to '%b')")
        );
        assert_eq!(error(b"%fa"), message("missing '[' after '%f' in pattern"));
    }

    #[test]
    fn catastrophic_backtracking_runs_out_of_budget() {
        let subject = vec![b'a'; 20_000];
        let mut meter = Limited(10_000_000);
        let outcome = find(&mut meter, &subject, b".-.-.-.-b", 1, false, true);
        assert_eq!(outcome, Err(PatternError::Limit));
    }

    #[test]
    fn gsub_and_gmatch_positions() {
        let m = &mut Unlimited;
        let mut spans = Vec::new();
        let count = substitutions(m, b"hello world", b"o", usize::MAX, &mut |r| {
            spans.push((r.start, r.end));
            true
        })
        .unwrap();
        assert_eq!((count, spans), (2, vec![(4, 5), (7, 8)]));
        let empty = substitutions(m, b"abc", b"x*", usize::MAX, &mut |_| true).unwrap();
        assert_eq!(empty, 4, "an empty match at every position, as Lua does");
        let mut position = 0;
        let mut words = Vec::new();
        while let Some(captures) = next_match(m, b"one two  three", b"%a+", &mut position).unwrap()
        {
            words.extend(captures);
        }
        assert_eq!(words, vec![text("one"), text("two"), text("three")]);
    }
}
