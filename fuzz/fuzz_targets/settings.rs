//! The settings parsers: `WardenConfig::from_vars` over arbitrary
//! name/value pairs, and `WardenConfig::from_toml` over arbitrary text.
//!
//! Invariants: never a panic; the same input gives the same answer; an
//! error from `from_vars` names one of `config::VARIABLES`, or an unknown
//! `MCP_` variable of the input (then it says "unknown setting"); an error
//! from `from_toml` names a variable, the settings file, or an unknown key
//! (as "unknown setting <key> in ..."), and a TOML syntax error never
//! quotes the text.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tower_warden::config::{VARIABLES, WardenConfig};

#[derive(Arbitrary, Debug)]
enum Name {
    Known(u8),
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Input {
    Vars(Vec<(Name, String)>),
    Toml(String),
}

/// Paths the `*_FILE` settings may name: the target must not read
/// whatever path the fuzzer writes (`/dev/zero` would never end).
const FILES: [&str; 4] = [
    "",
    "/nonexistent/tower-warden-fuzz",
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/keys/rsa.pub.pem"
    ),
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/keys/README.md"
    ),
];

fn pairs(vars: &[(Name, String)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(name, value)| {
            let name = match name {
                Name::Known(i) => VARIABLES[usize::from(*i) % VARIABLES.len()].to_owned(),
                Name::Other(s) => s.clone(),
            };
            let value = if name.ends_with("_FILE") {
                FILES[value.len() % FILES.len()].to_owned()
            } else {
                value.clone()
            };
            (name, value)
        })
        .collect()
}

fuzz_target!(|input: Input| {
    match input {
        Input::Vars(vars) => {
            let vars = pairs(&vars);
            let first = WardenConfig::from_vars(vars.iter().map(|(k, v)| (k, v)));
            let again = WardenConfig::from_vars(vars.iter().map(|(k, v)| (k, v)));
            match (&first, &again) {
                (Ok(_), Ok(_)) => {}
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                _ => panic!("from_vars is not deterministic: {first:?} / {again:?}"),
            }
            if let Err(e) = first {
                let unknown = e.setting().starts_with("MCP_")
                    && vars.iter().any(|(name, _)| name == e.setting())
                    && e.message().starts_with("unknown setting ");
                assert!(
                    VARIABLES.contains(&e.setting()) || unknown,
                    "the error names no variable: {e}"
                );
            }
        }
        Input::Toml(text) => {
            if let Err(e) = WardenConfig::from_toml(&text) {
                let unknown = !e.setting().is_empty()
                    && e.message()
                        .starts_with(&format!("unknown setting {} in ", e.setting()));
                assert!(
                    VARIABLES.contains(&e.setting()) || unknown,
                    "the error names no variable: {e}"
                );
                if e.message().contains("is not valid TOML") {
                    for line in text.lines().map(str::trim).filter(|l| l.len() > 12) {
                        if !e.message().contains(line) {
                            continue;
                        }
                        // The line may just repeat the message's own wording
                        // (the fuzzer learns it from comparisons): quoted
                        // only if the message follows the line when it
                        // changes.
                        let other = scramble(line);
                        if other == line {
                            continue;
                        }
                        if let Err(e2) = WardenConfig::from_toml(&text.replace(line, &other)) {
                            assert!(
                                !e2.message().contains(&other),
                                "the error quotes the text: {e2}"
                            );
                        }
                    }
                }
            }
        }
    }
});

/// `line` with every ASCII letter and digit replaced by the next one.
fn scramble(line: &str) -> String {
    line.chars()
        .map(|c| match c {
            'z' => 'a',
            'Z' => 'A',
            '9' => '0',
            c if c.is_ascii_alphanumeric() => char::from(c as u8 + 1),
            c => c,
        })
        .collect()
}
