//! The reader: source text to forms (`ale.md` §3.2), with Ale's error messages and positions.

use std::sync::Arc;

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::Num;

use crate::error::{AleError, AleResult};
use crate::number::{from_big, from_ratio};
use crate::value::{ObjectMap, Symbol, Value};

/// Reads every form of `source`.
pub fn read_all(source: &str) -> AleResult<Vec<Value>> {
    let mut reader = Reader::new(source);
    let mut forms = Vec::new();
    while let Some(form) = reader.next_form()? {
        forms.push(form);
    }
    Ok(forms)
}

/// A streaming reader: one top-level form at a time (Ale reads, compiles and runs each form
/// before reading the next, so a later syntax error does not stop earlier forms).
pub struct Reader<'a> {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    column: usize,
    _source: &'a str,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    ListStart,
    ListEnd,
    VectorStart,
    VectorEnd,
    ObjectStart,
    ObjectEnd,
    BytesStart,
    Quote(&'static str),
    Dot,
    Datum(Value),
}

#[derive(Clone, Copy)]
struct Pos {
    line: usize,
    column: usize,
}

fn is_structure(c: char) -> bool {
    matches!(c, '(' | ')' | '[' | ']' | '{' | '}' | '"')
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{c}' | '\n' | '\r')
}

impl<'a> Reader<'a> {
    /// A reader over `source`.
    pub fn new(source: &'a str) -> Self {
        Reader {
            chars: source.chars().collect(),
            pos: 0,
            line: 1,
            column: 1,
            _source: source,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        match c {
            '\n' => {
                self.line += 1;
                self.column = 1;
            }
            '\r' => {
                if self.peek() != Some('\n') {
                    self.line += 1;
                    self.column = 1;
                }
            }
            _ => self.column += 1,
        }
        Some(c)
    }

    fn here(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn error(&self, message: impl std::fmt::Display, at: Pos) -> AleError {
        AleError::read(message, at.line, at.column)
    }

    /// Skips whitespace and comments.
    fn skip_ignorable(&mut self) -> AleResult<()> {
        loop {
            match self.peek() {
                Some(c) if is_whitespace(c) => {
                    self.bump();
                }
                Some(';') => {
                    while let Some(c) = self.peek() {
                        if c == '\n' || c == '\r' {
                            break;
                        }
                        self.bump();
                    }
                }
                Some('#') if self.peek_at(1) == Some('|') => {
                    let start = self.here();
                    self.bump();
                    self.bump();
                    let mut depth = 1;
                    while depth > 0 {
                        match self.peek() {
                            None => return Err(self.error("comment has no closing marker", start)),
                            Some('#') if self.peek_at(1) == Some('|') => {
                                self.bump();
                                self.bump();
                                depth += 1;
                            }
                            Some('|') if self.peek_at(1) == Some('#') => {
                                self.bump();
                                self.bump();
                                depth -= 1;
                            }
                            Some(_) => {
                                self.bump();
                            }
                        }
                    }
                }
                Some('|') if self.peek_at(1) == Some('#') => {
                    return Err(
                        self.error("encountered '|#' with no open block comment", self.here())
                    );
                }
                _ => return Ok(()),
            }
        }
    }

    fn next_token(&mut self) -> AleResult<Option<(Token, Pos)>> {
        self.skip_ignorable()?;
        let at = self.here();
        let Some(c) = self.peek() else {
            return Ok(None);
        };
        let simple = match c {
            '(' => Some(Token::ListStart),
            ')' => Some(Token::ListEnd),
            '[' => Some(Token::VectorStart),
            ']' => Some(Token::VectorEnd),
            '{' => Some(Token::ObjectStart),
            '}' => Some(Token::ObjectEnd),
            '\'' => Some(Token::Quote("quote")),
            '`' => Some(Token::Quote("syntax-quote")),
            _ => None,
        };
        if let Some(token) = simple {
            self.bump();
            return Ok(Some((token, at)));
        }
        if c == ',' {
            self.bump();
            if self.peek() == Some('@') {
                self.bump();
                return Ok(Some((Token::Quote("unquote-splicing"), at)));
            }
            return Ok(Some((Token::Quote("unquote"), at)));
        }
        if c == '#' && self.peek_at(1) == Some('b') && self.peek_at(2) == Some('[') {
            self.bump();
            self.bump();
            self.bump();
            return Ok(Some((Token::BytesStart, at)));
        }
        if c == '"' {
            return self.read_string(at).map(|v| Some((Token::Datum(v), at)));
        }
        if c == '@' || c == '`' {
            self.bump();
            return Err(self.error(format!("unexpected characters: {c}"), at));
        }
        // An atom: everything up to whitespace or structure.
        let start = self.pos;
        while let Some(next) = self.peek() {
            if is_whitespace(next) || is_structure(next) {
                break;
            }
            self.bump();
        }
        let text: String = self
            .chars
            .get(start..self.pos)
            .unwrap_or_default()
            .iter()
            .collect();
        self.atom(&text, at).map(|token| Some((token, at)))
    }

    fn read_string(&mut self, at: Pos) -> AleResult<Value> {
        self.bump(); // opening quote
        let mut text = String::new();
        loop {
            match self.bump() {
                None => return Err(self.error("string has no closing quote", at)),
                Some('"') => return Ok(Value::string(text)),
                Some('\\') => match self.bump() {
                    None => return Err(self.error("string has no closing quote", at)),
                    Some('n') => text.push('\n'),
                    Some('t') => text.push('\t'),
                    Some('r') => text.push('\r'),
                    Some('b') => text.push('\u{8}'),
                    Some('f') => text.push('\u{c}'),
                    Some('s') => text.push(' '),
                    Some(other) => text.push(other),
                },
                Some(other) => text.push(other),
            }
        }
    }

    fn atom(&self, text: &str, at: Pos) -> AleResult<Token> {
        if text == "." {
            return Ok(Token::Dot);
        }
        if let Some(number) = parse_number(text) {
            return number
                .map(Token::Datum)
                .map_err(|message| self.error(message, at));
        }
        match text {
            "#t" => return Ok(Token::Datum(Value::Bool(true))),
            "#f" => return Ok(Token::Datum(Value::Bool(false))),
            _ => {}
        }
        if let Some(name) = text.strip_prefix(':')
            && !name.is_empty()
        {
            return Ok(Token::Datum(Value::keyword(name)));
        }
        parse_symbol(text)
            .map(|s| Token::Datum(Value::Symbol(s)))
            .ok_or_else(|| self.error(format!("invalid symbol: {text}"), at))
    }

    /// Reads the next top-level form; `None` at the end of the input.
    pub fn next_form(&mut self) -> AleResult<Option<Value>> {
        match self.next_token()? {
            None => Ok(None),
            Some((token, at)) => self.form_from(token, at).map(Some),
        }
    }

    fn form_from(&mut self, token: Token, at: Pos) -> AleResult<Value> {
        match token {
            Token::Datum(value) => Ok(value),
            Token::ListStart => self.read_list(at),
            Token::VectorStart => self.read_vector(at, "vector not closed").map(Value::vector),
            Token::BytesStart => {
                let items = self.read_vector(at, "vector not closed")?;
                let bytes: Option<Vec<u8>> = items
                    .iter()
                    .map(|item| match item {
                        Value::Int(i) => u8::try_from(*i).ok(),
                        _ => None,
                    })
                    .collect();
                Ok(match bytes {
                    Some(bytes) => Value::Bytes(Arc::new(bytes)),
                    None => {
                        let mut call = vec![Value::Symbol(Symbol::qualified("ale", "bytes"))];
                        call.extend(items);
                        Value::list(call)
                    }
                })
            }
            Token::ObjectStart => self.read_object(at),
            Token::Quote(name) => match self.next_token()? {
                None => Err(self.error(format!("end of file before completing: ale/{name}"), at)),
                Some((inner, inner_at)) => {
                    let form = self.form_from(inner, inner_at)?;
                    Ok(Value::list([
                        Value::Symbol(Symbol::qualified("ale", name)),
                        form,
                    ]))
                }
            },
            Token::ListEnd => Err(self.error("unmatched list end", at)),
            Token::VectorEnd => Err(self.error("unmatched vector end", at)),
            Token::ObjectEnd => Err(self.error("unmatched object end", at)),
            Token::Dot => Err(self.error("unexpected dot", at)),
        }
    }

    fn read_list(&mut self, start: Pos) -> AleResult<Value> {
        let mut items = Vec::new();
        let mut tail: Option<Value> = None;
        let mut last = start;
        loop {
            let Some((token, at)) = self.next_token()? else {
                return Err(self.error("list not closed", last));
            };
            last = at;
            match token {
                Token::ListEnd => {
                    return Ok(match tail {
                        None => Value::list(items),
                        Some(tail) => dotted(items, tail),
                    });
                }
                Token::Dot => {
                    if items.is_empty() || tail.is_some() {
                        return Err(self.error("invalid list syntax", at));
                    }
                    let Some((next, next_at)) = self.next_token()? else {
                        return Err(self.error("list not closed", at));
                    };
                    last = next_at;
                    match next {
                        Token::ListEnd | Token::Dot => {
                            return Err(self.error("invalid list syntax", next_at));
                        }
                        other => tail = Some(self.form_from(other, next_at)?),
                    }
                }
                other => {
                    if tail.is_some() {
                        // Anything after the dotted tail but the closing paren is invalid; the
                        // error is reported where the list ends.
                        let form = self.form_from(other, at)?;
                        drop(form);
                        loop {
                            match self.next_token()? {
                                None => return Err(self.error("list not closed", last)),
                                Some((Token::ListEnd, end)) => {
                                    return Err(self.error("invalid list syntax", end));
                                }
                                Some((Token::Dot, dot_at)) => {
                                    return Err(self.error("invalid list syntax", dot_at));
                                }
                                Some((other, other_at)) => {
                                    last = other_at;
                                    self.form_from(other, other_at)?;
                                }
                            }
                        }
                    }
                    items.push(self.form_from(other, at)?);
                }
            }
        }
    }

    fn read_vector(&mut self, start: Pos, not_closed: &str) -> AleResult<Vec<Value>> {
        let mut items = Vec::new();
        let mut last = start;
        loop {
            let Some((token, at)) = self.next_token()? else {
                return Err(self.error(not_closed, last));
            };
            last = at;
            match token {
                Token::VectorEnd => return Ok(items),
                other => items.push(self.form_from(other, at)?),
            }
        }
    }

    fn read_object(&mut self, start: Pos) -> AleResult<Value> {
        let mut items = Vec::new();
        let mut last = start;
        loop {
            let Some((token, at)) = self.next_token()? else {
                return Err(self.error("object not closed", last));
            };
            last = at;
            match token {
                Token::ObjectEnd => {
                    if items.len() % 2 != 0 {
                        return Err(self.error("map must contain an even number of elements", at));
                    }
                    let mut map = ObjectMap::with_capacity(items.len() / 2);
                    let mut pairs = items.into_iter();
                    while let (Some(key), Some(value)) = (pairs.next(), pairs.next()) {
                        map.entry(key).or_insert(value);
                    }
                    return Ok(Value::object(map));
                }
                other => items.push(self.form_from(other, at)?),
            }
        }
    }
}

/// `(a b . tail)`: a proper list when the tail is a list, cons cells otherwise.
fn dotted(items: Vec<Value>, tail: Value) -> Value {
    let mut result = tail;
    for item in items.into_iter().rev() {
        result = match result {
            Value::Null => Value::list_cons(item, None),
            Value::List(node) => Value::list_cons(item, Some(node)),
            other => Value::pair(item, other),
        };
    }
    result
}

/// A symbol from its text: `name`, `domain/name`, or `/`.
pub fn parse_symbol(text: &str) -> Option<Symbol> {
    if text.is_empty() {
        return None;
    }
    if text == "/" {
        return Some(Symbol::local("/"));
    }
    match text.split_once('/') {
        None => Some(Symbol::local(text)),
        Some((domain, name)) => {
            if domain.is_empty() || name.is_empty() || name.contains('/') {
                None
            } else {
                Some(Symbol::qualified(domain, name))
            }
        }
    }
}

/// Length of the longest prefix of `s` made of digits accepted by `is_digit`, allowing single
/// underscores between digits.
fn digits_prefix(s: &[char], is_digit: impl Fn(char) -> bool) -> usize {
    let mut end = 0;
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        if is_digit(c) {
            i += 1;
            end = i;
        } else if c == '_' && end == i && i > 0 && s.get(i + 1).is_some_and(|n| is_digit(*n)) {
            i += 1;
        } else {
            break;
        }
    }
    end
}

/// Parses a numeric token: `None` when the text is not a number at all; `Some(Err(message))`
/// when it starts like one but has trailing characters or cannot be represented.
pub fn parse_number(text: &str) -> Option<Result<Value, String>> {
    let chars: Vec<char> = text.chars().collect();
    let (negative, body_start) = match chars.first() {
        Some('+') => (false, 1),
        Some('-') => (true, 1),
        _ => (false, 0),
    };
    let body = chars.get(body_start..).unwrap_or_default();
    if !body.first().is_some_and(char::is_ascii_digit) {
        return None;
    }
    let sign = if negative { "-" } else { "" };
    let decimal = |s: &[char]| digits_prefix(s, |c| c.is_ascii_digit());

    // ratio: (0|[1-9]\d*) / [1-9]\d*
    let numerator_len = if body.first() == Some(&'0') {
        1
    } else {
        decimal(body)
    };
    if body.get(numerator_len) == Some(&'/') {
        let rest = body.get(numerator_len + 1..).unwrap_or_default();
        let denominator_len = if rest.first().is_some_and(|c| ('1'..='9').contains(c)) {
            decimal(rest)
        } else {
            0
        };
        if denominator_len > 0 {
            if numerator_len + 1 + denominator_len == body.len() {
                let numer: String = body
                    .get(..numerator_len)
                    .unwrap_or_default()
                    .iter()
                    .filter(|c| **c != '_')
                    .collect();
                let denom: String = rest
                    .get(..denominator_len)
                    .unwrap_or_default()
                    .iter()
                    .filter(|c| **c != '_')
                    .collect();
                let parsed = (
                    BigInt::from_str_radix(&format!("{sign}{numer}"), 10),
                    BigInt::from_str_radix(&denom, 10),
                );
                return Some(match parsed {
                    (Ok(n), Ok(d)) => Ok(from_ratio(BigRational::new(n, d))),
                    _ => Err(format!("value is not a ratio: {text}")),
                });
            }
            return Some(Err(format!("value is not a ratio: {text}")));
        }
    }

    // float: \d+ . \d+ ([eE][+-]?\d+)?  or  \d+ [eE][+-]?\d+
    let whole = decimal(body);
    let mut float_end = None;
    let mut cursor = whole;
    if body.get(cursor) == Some(&'.') {
        let fraction = decimal(body.get(cursor + 1..).unwrap_or_default());
        if fraction > 0 {
            cursor += 1 + fraction;
            float_end = Some(cursor);
        }
    }
    if matches!(body.get(cursor), Some('e' | 'E')) {
        let mut exp_start = cursor + 1;
        if matches!(body.get(exp_start), Some('+' | '-')) {
            exp_start += 1;
        }
        let exp_digits = decimal(body.get(exp_start..).unwrap_or_default());
        if exp_digits > 0 {
            float_end = Some(exp_start + exp_digits);
        }
    }
    if let Some(end) = float_end {
        if end == body.len() {
            let literal: String = body.iter().filter(|c| **c != '_').collect();
            return Some(match format!("{sign}{literal}").parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Value::Float(f)),
                _ => Err(format!("value is not a float: {text}")),
            });
        }
        return Some(Err(format!("value is not a float: {text}")));
    }

    // integer: 0x.., 0b.., 0 + octal, or decimal
    let (radix, digits_start, digits_len) = match (body.first(), body.get(1)) {
        (Some('0'), Some('x' | 'X')) => (
            16,
            2,
            digits_prefix(body.get(2..).unwrap_or_default(), |c| c.is_ascii_hexdigit()),
        ),
        (Some('0'), Some('b' | 'B')) => (
            2,
            2,
            digits_prefix(body.get(2..).unwrap_or_default(), |c| c == '0' || c == '1'),
        ),
        (Some('0'), _) => (8, 0, digits_prefix(body, |c| ('0'..='7').contains(&c))),
        _ => (10, 0, decimal(body)),
    };
    if digits_len == 0 || digits_start + digits_len != body.len() {
        return Some(Err(format!("value is not an integer: {text}")));
    }
    let digits: String = body
        .get(digits_start..)
        .unwrap_or_default()
        .iter()
        .filter(|c| **c != '_')
        .collect();
    Some(match BigInt::from_str_radix(&digits, radix) {
        Ok(magnitude) => Ok(from_big(if negative { -magnitude } else { magnitude })),
        Err(_) => Err(format!("value is not an integer: {text}")),
    })
}
