//! The spec parser never panics, whatever it is given (property tests).

use proptest::prelude::*;

const VALID: &str = r#"
[route]
backend = "appmesh"
mesh = "m"
router = "r"
route = "x"
stable = "a"
new = "b"

[strategy]
kind = "canary"
steps = [10, 50, 100]
bake = "1s"

[[checks]]
kind = "http"
url = "http://127.0.0.1:1/"
"#;

/// What `meshkit plan` decides for a spec, in process: 0 accepted, 2 refused.
fn plan(text: &str, ext: &str) -> i32 {
    match meshkit_cli::load_spec(text, meshkit_cli::spec::Format::of(&format!("spec.{ext}"))) {
        Ok(_) => 0,
        Err(e) => {
            // A refusal always says what is wrong.
            assert!(!e.message.is_empty(), "{e:?}");
            2
        }
    }
}

#[test]
fn the_valid_spec_is_accepted() {
    assert_eq!(plan(VALID, "toml"), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Arbitrary text: refused with a message, never a panic.
    #[test]
    fn arbitrary_text_is_refused_cleanly(text in "\\PC{0,200}", json in any::<bool>()) {
        let code = plan(&text, if json { "json" } else { "toml" });
        prop_assert_eq!(code, 2);
    }

    /// A valid spec with one line replaced by arbitrary text: accepted or refused, no panic.
    #[test]
    fn a_mutated_valid_spec_never_crashes(line in 0usize..20, junk in "\\PC{0,40}") {
        let mut lines: Vec<String> = VALID.lines().map(String::from).collect();
        let i = line % lines.len();
        lines[i] = junk;
        let code = plan(&lines.join("\n"), "toml");
        prop_assert!(matches!(code, 0 | 2), "exit {}", code);
    }
}

/// The binary agrees with the library on one accepted and one refused spec.
#[test]
fn the_binary_exits_as_the_library_decides() {
    let dir = std::env::temp_dir().join(format!("meshkit-props-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text, code) in [("ok.toml", VALID, 0), ("bad.toml", "[route", 2)] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshkit"))
            .arg("plan")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{name}");
    }
}
