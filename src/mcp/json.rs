//! The little JSON the MCP layers need, without a JSON library: a syntax
//! check that also finds the top-level `id` of a JSON-RPC message, and the
//! writer for JSON-RPC error objects.

/// Nesting deeper than this is refused as a parse error (no deep recursion
/// on hostile input).
const MAX_DEPTH: usize = 128;

/// What the syntax check learned about a well-formed message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Peek {
    /// The raw JSON text of the top-level `id` member, when the message is
    /// an object whose `id` is a string, a number or `null`.
    pub(crate) id: Option<String>,
}

/// Checks that `input` is exactly one RFC 8259 JSON text.
///
/// Returns `None` when it is not (the JSON-RPC "parse error" case).
pub(crate) fn check(input: &[u8]) -> Option<Peek> {
    let text = std::str::from_utf8(input).ok()?;
    let mut parser = Parser {
        bytes: text.as_bytes(),
        pos: 0,
    };
    let mut peek = Peek::default();
    parser.skip_ws();
    parser.value(0, Some(&mut peek))?;
    parser.skip_ws();
    (parser.pos == parser.bytes.len()).then_some(peek)
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos.checked_add(word.len())?;
        (self.bytes.get(self.pos..end)? == word).then(|| self.pos = end)
    }

    /// One value. `top` is set only for the top-level value, whose `id`
    /// member is recorded.
    fn value(&mut self, depth: usize, top: Option<&mut Peek>) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'{' => self.object(depth, top),
            b'[' => self.array(depth),
            b'"' => self.string(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn object(&mut self, depth: usize, mut top: Option<&mut Peek>) -> Option<()> {
        self.eat(b'{')?;
        self.skip_ws();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            self.skip_ws();
            let key_start = self.pos;
            self.string()?;
            let is_id = &self.bytes[key_start..self.pos] == b"\"id\"";
            self.skip_ws();
            self.eat(b':')?;
            self.skip_ws();
            let value_start = self.pos;
            let first = self.peek()?;
            self.value(depth + 1, None)?;
            if is_id
                && let Some(peek) = top.as_deref_mut()
                && matches!(first, b'"' | b'-' | b'0'..=b'9' | b'n')
            {
                let raw = &self.bytes[value_start..self.pos];
                peek.id = std::str::from_utf8(raw).ok().map(str::to_owned);
            }
            self.skip_ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        self.eat(b'[')?;
        self.skip_ws();
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            self.skip_ws();
            self.value(depth + 1, None)?;
            self.skip_ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn string(&mut self) -> Option<()> {
        self.eat(b'"')?;
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some(());
                }
                b'\\' => {
                    self.pos += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 1,
                        b'u' => {
                            self.pos += 1;
                            match self.hex4()? {
                                // A lone trailing surrogate.
                                0xDC00..=0xDFFF => return None,
                                // A leading surrogate: its trailing half
                                // must follow (`serde_json` refuses a lone
                                // one, and the service parses with it).
                                0xD800..=0xDBFF => {
                                    self.literal(b"\\u")?;
                                    if !(0xDC00..=0xDFFF).contains(&self.hex4()?) {
                                        return None;
                                    }
                                }
                                _ => {}
                            }
                        }
                        _ => return None,
                    }
                }
                0x00..=0x1f => return None,
                _ => self.pos += 1,
            }
        }
    }

    /// Four hex digits, as a UTF-16 code unit.
    fn hex4(&mut self) -> Option<u16> {
        let digits = self.bytes.get(self.pos..self.pos.checked_add(4)?)?;
        let mut unit = 0u16;
        for &digit in digits {
            unit = unit << 4 | u16::try_from(char::from(digit).to_digit(16)?).ok()?;
        }
        self.pos += 4;
        Some(unit)
    }

    fn digits(&mut self) -> Option<()> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        (self.pos > start).then_some(())
    }

    /// A number, refused (like `serde_json`, which the service behind the
    /// layers parses with) when its value is beyond the range of `f64`:
    /// `1e400` is valid JSON grammar, but no message carrying it can be
    /// read, so it is a parse error here too rather than a message the
    /// layers inspect and pass on.
    fn number(&mut self) -> Option<()> {
        let start = self.pos;
        let _ = self.eat(b'-');
        if self.eat(b'0').is_none() {
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits()?;
        }
        if self.eat(b'.').is_some() {
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.digits()?;
            return self.in_range(start);
        }
        // Without an exponent only a very long number can overflow.
        if self.pos - start > 300 {
            return self.in_range(start);
        }
        Some(())
    }

    /// Whether the number from `start` to here is finite as an `f64`,
    /// decided by `serde_json` itself so that the two always agree.
    fn in_range(&self, start: usize) -> Option<()> {
        let text = self.bytes.get(start..self.pos)?;
        serde_json::from_slice::<serde_json::Number>(text)
            .is_ok()
            .then_some(())
    }
}

/// Appends `s` as the inside of a JSON string literal (no quotes).
pub(crate) fn escape_into(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &byte in s {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x00..=0x1f | 0x7f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            }
            _ => out.push(byte),
        }
    }
}

/// The opening of a JSON-RPC error response, up to and including the
/// opening quote of `error.message`.
pub(crate) fn error_prefix(id: Option<&str>, code: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.unwrap_or("null").as_bytes());
    out.extend_from_slice(b",\"error\":{\"code\":");
    out.extend_from_slice(code.to_string().as_bytes());
    out.extend_from_slice(b",\"message\":\"");
    out
}

/// The closing of a JSON-RPC error response opened by [`error_prefix`].
pub(crate) const ERROR_SUFFIX: &[u8] = b"\"}}";

/// A whole JSON-RPC error response.
pub(crate) fn error_object(id: Option<&str>, code: i32, message: &str) -> Vec<u8> {
    let mut out = error_prefix(id, code);
    escape_into(&mut out, message.as_bytes());
    out.extend_from_slice(ERROR_SUFFIX);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> bool {
        check(text.as_bytes()).is_some()
    }

    #[test]
    fn accepts_json_texts() {
        for text in [
            "{}",
            "[]",
            " {\"a\" : [1, -2.5e+3, 0, 0.1, true, false, null, \"x\\u00e9\\n\"]}\r\n",
            "\"just a string\"",
            "12",
            "{\"nested\":{\"deeper\":[[[]]]}}",
            "\"caf\u{e9}\"",
        ] {
            assert!(ok(text), "{text}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        for text in [
            "",
            "   ",
            "{",
            "{\"a\":}",
            "{\"a\":1,}",
            "[1,]",
            "[1 2]",
            "{a:1}",
            "'x'",
            "01",
            "1.",
            "-",
            "1e",
            "tru",
            "nul",
            "\"unterminated",
            "\"bad \\x escape\"",
            "\"\\u12g4\"",
            "\"raw \n newline\"",
            "{} {}",
            "{}x",
            "NaN",
        ] {
            assert!(!ok(text), "{text:?}");
        }
        assert!(check(b"\"\xff\"").is_none());
    }

    #[test]
    fn numbers_beyond_f64_are_a_parse_error() {
        // Found by the `jsonrpc_peek` fuzz target: `11111E711` passed the
        // check although `serde_json` (and so the service) refuses it.
        for text in [
            "11111E711",
            "1e400",
            "-1E+309",
            r#"{"jsonrpc":"2.0","id":1e999,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"n":[2e308]}}"#,
            &"9".repeat(400),
            &format!("-{}.5", "1".repeat(400)),
        ] {
            assert!(!ok(text), "{text:?}");
            assert!(serde_json::from_str::<serde_json::Value>(text).is_err());
        }
        for text in [
            "1e-400",
            "1.7976931348623157e308",
            "-0E+0",
            &"9".repeat(300),
            &format!("0.{}", "1".repeat(400)),
            r#"{"id":1E2,"x":123456789012345678901234567890}"#,
        ] {
            assert!(ok(text), "{text:?}");
            assert!(serde_json::from_str::<serde_json::Value>(text).is_ok());
        }
    }

    #[test]
    fn lone_surrogate_escapes_are_a_parse_error() {
        // Found by the `jsonrpc_peek` fuzz target: an `id` holding
        // `\ud9dd` followed by no trailing surrogate passed the check,
        // although `serde_json` (and so the service) refuses it.
        for text in [
            r#""\ud9dd&""#,
            r#""\uD800""#,
            r#""\uDC00""#,
            r#""\uD800\u0041""#,
            r#""\uD800\n""#,
            r#""\uDBFF\uE000""#,
            r#"{"id":"\ud9dd","method":"ping"}"#,
            r#"{"\udfff":1}"#,
        ] {
            assert!(!ok(text), "{text:?}");
            assert!(serde_json::from_str::<serde_json::Value>(text).is_err());
        }
        for text in [
            r#""\uD83D\uDE00""#,
            r#""\ud800\udc00\u00e9\uFFFF""#,
            r#"{"id":"\uDBFF\uDFFF"}"#,
        ] {
            assert!(ok(text), "{text:?}");
            assert!(serde_json::from_str::<serde_json::Value>(text).is_ok());
        }
    }

    #[test]
    fn deep_nesting_is_a_parse_error_not_a_stack_overflow() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(!ok(&deep));
        let fine = "[".repeat(100) + &"]".repeat(100);
        assert!(ok(&fine));
    }

    #[test]
    fn finds_the_top_level_id() {
        let id = |text: &str| check(text.as_bytes()).unwrap().id;
        assert_eq!(
            id(r#"{"jsonrpc":"2.0","id":7,"method":"x"}"#),
            Some("7".into())
        );
        assert_eq!(
            id(r#"{"id" : "a\"b","method":"x"}"#),
            Some(r#""a\"b""#.into())
        );
        assert_eq!(id(r#"{"id":null}"#), Some("null".into()));
        assert_eq!(id(r#"{"params":{"id":3},"method":"x"}"#), None);
        assert_eq!(id(r#"{"id":{"x":1}}"#), None);
        assert_eq!(id(r#"[{"id":1}]"#), None);
    }

    #[test]
    fn error_objects_are_escaped() {
        let body = error_object(Some("\"x\""), -32700, "bad \"json\"\n\u{1}");
        let text = String::from_utf8(body).unwrap();
        assert_eq!(
            text,
            r#"{"jsonrpc":"2.0","id":"x","error":{"code":-32700,"message":"bad \"json\"\n\u0001"}}"#
        );
        assert!(ok(&text));
    }
}
