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

/// Each call writes its own file: the tests run in parallel.
static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn plan(text: &str, ext: &str) -> Option<i32> {
    let dir = std::env::temp_dir().join(format!("meshkit-props-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let path = dir.join(format!("spec-{n}.{ext}"));
    std::fs::write(&path, text).ok()?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshkit"))
        .arg("plan")
        .arg(&path)
        .output()
        .ok()?;
    out.status.code()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary bytes: refused with exit 2, never a crash (101) or a signal (None).
    #[test]
    fn arbitrary_text_is_refused_cleanly(text in "\\PC{0,200}", json in any::<bool>()) {
        let code = plan(&text, if json { "json" } else { "toml" });
        prop_assert_eq!(code, Some(2));
    }

    /// A valid spec with one line replaced by arbitrary text: accepted or refused, no crash.
    #[test]
    fn a_mutated_valid_spec_never_crashes(line in 0usize..20, junk in "\\PC{0,40}") {
        let mut lines: Vec<String> = VALID.lines().map(String::from).collect();
        let i = line % lines.len();
        lines[i] = junk;
        let code = plan(&lines.join("\n"), "toml");
        prop_assert!(matches!(code, Some(0 | 2)), "exit {:?}", code);
    }
}
