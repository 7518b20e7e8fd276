//! The README stays true: its two commands are the ones CI runs, and every
//! environment variable the configuration reads is documented in it.

const README: &str = include_str!("../README.md");
const CI: &str = include_str!("../.ci/run");

#[test]
fn readme_opens_with_the_two_commands_and_ci_runs_the_test_command() {
    let first_block: Vec<&str> = README
        .split("```sh")
        .nth(1)
        .expect("a shell block")
        .split("```")
        .next()
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(first_block[0].starts_with("cargo run --example mcp_server"));
    assert!(first_block[1].starts_with("cargo test --all-features"));
    assert!(
        CI.lines().any(|l| l.trim() == "cargo test --all-features"),
        ".ci/run must run the README's test command"
    );
}

#[test]
fn readme_documents_every_configuration_variable() {
    for name in tower_warden::config::VARIABLES {
        assert!(
            README.contains(&format!("| `{name}` |")),
            "README.md has no table row for {name}"
        );
    }
}
