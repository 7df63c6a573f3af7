//! The bad-input corpus: every `tests/bad_configs/NAME.toml` is an invalid `hale.toml`, loaded
//! through `hale_cli::config::load` and rendered as `hale check` prints it; the text must equal
//! `NAME.expected` byte for byte. `UPDATE_EXPECT=1 cargo test -p hale-cli --test bad_configs`
//! rewrites the expected files (read the diff: each error must name the file, line, column and
//! key, and say how to fix it). Beside the exact texts, every error of the corpus is checked for
//! those parts structurally, so that a regenerated expectation cannot quietly lose one.
//!
//! Files are named relative to the crate directory (`tests/bad_configs/NAME.toml`, cargo runs
//! integration tests there), so no absolute temporary path ends up in an expected file. Inputs
//! that cannot live in the corpus (a missing file, a directory, a 20 MB file, an endless one)
//! are built by the tests below.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use hale_cli::config::{self, ConfigErrors};

const DIR: &str = "tests/bad_configs";

/// What `hale check` prints for a file with errors (stderr): every error, then the summary.
fn render(errors: &ConfigErrors) -> String {
    format!("{errors}\n{}\n", errors.summary())
}

/// The corpus's `.toml` files, sorted, as paths relative to the crate directory.
fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(DIR);
    assert!(
        dir.is_dir(),
        "{DIR} not found from {:?}: run the test through cargo",
        std::env::current_dir()
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read the corpus directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| Path::new(DIR).join(p.file_name().expect("a file name")))
        .collect();
    files.sort();
    files
}

/// What an error lacks of: a position, a key, a fix, `FILE:LINE:COLUMN: error: KEY: ` at the
/// start of its rendering. Empty when it is complete.
fn incomplete(file: &Path, errors: &ConfigErrors) -> Vec<String> {
    let mut problems = Vec::new();
    if errors.is_empty() {
        problems.push(format!("{}: an empty error list", file.display()));
    }
    for e in errors {
        let mut lacks = Vec::new();
        if e.position.is_none_or(|p| p.line == 0 || p.column == 0) {
            lacks.push("a position");
        }
        // Only a file that is not TOML (or not text) from its first byte has no key to name.
        let whole_file = e.position.is_some_and(|p| p.line == 1 && p.column == 1);
        if e.key.is_empty() && !whole_file {
            lacks.push("a key");
        }
        if e.help.as_deref().is_none_or(|h| h.trim().is_empty()) {
            lacks.push("a fix");
        }
        let rendered = e.to_string();
        if let Some(pos) = e.position {
            let key = if e.key.is_empty() { String::new() } else { format!("{}: ", e.key) };
            let head = format!("{}:{}:{}: error: {key}", file.display(), pos.line, pos.column);
            if !rendered.starts_with(&head) {
                lacks.push("the FILE:LINE:COLUMN: error: KEY: head");
            }
        }
        if !lacks.is_empty() {
            problems.push(format!("{} lacks {}:\n{rendered}", file.display(), lacks.join(", ")));
        }
    }
    problems
}

#[test]
fn every_bad_config_gives_exactly_its_expected_errors() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let files = corpus();
    assert!(files.len() >= 45, "the corpus has only {} files", files.len());
    let mut mismatches = Vec::new();
    let mut incomplete_errors = Vec::new();
    let mut loaded = Vec::new();
    for file in &files {
        let started = Instant::now();
        let result = std::panic::catch_unwind(|| config::load(file));
        let errors = match result {
            Ok(Ok(_)) => {
                loaded.push(file.display().to_string());
                continue;
            }
            Ok(Err(errors)) => errors,
            Err(_) => panic!("the loader panicked on {}", file.display()),
        };
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{} took {:?}",
            file.display(),
            started.elapsed()
        );
        incomplete_errors.extend(incomplete(file, &errors));
        let actual = render(&errors);
        let expected_path = file.with_extension("expected");
        if update {
            std::fs::write(&expected_path, &actual).expect("write the expected file");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|e| {
            panic!("{}: {e} (UPDATE_EXPECT=1 writes it)", expected_path.display())
        });
        if expected != actual {
            mismatches
                .push(format!("--- {}\n{expected}+++ actual\n{actual}", expected_path.display()));
        }
    }
    assert!(loaded.is_empty(), "these invalid files loaded without an error: {loaded:?}");
    assert!(
        incomplete_errors.is_empty(),
        "{} errors do not name their position, key and fix:\n\n{}",
        incomplete_errors.len(),
        incomplete_errors.join("\n\n")
    );
    assert!(
        mismatches.is_empty(),
        "{} of {} files differ (UPDATE_EXPECT=1 rewrites them; read the diff):\n\n{}",
        mismatches.len(),
        files.len(),
        mismatches.join("\n")
    );
}

/// An `.expected` file whose `.toml` was removed or renamed is a test that silently stopped.
#[test]
fn no_expected_file_is_left_without_its_config() {
    for entry in std::fs::read_dir(DIR).expect("read the corpus directory") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "expected") {
            assert!(path.with_extension("toml").is_file(), "{} has no .toml", path.display());
        }
    }
}

/// `hale check -c FILE` exits 1 and prints exactly the loader's rendering on stderr, for a
/// sample of the corpus (a syntax error, bytes that are not UTF-8, a cycle, several errors).
#[test]
fn hale_check_exits_1_and_prints_the_expected_text() {
    for name in [
        "syntax_unclosed_array",
        "not_utf8_latin1",
        "nul_byte_in_string",
        "dependency_cycle",
        "many_errors",
        "missing_env_file",
        "empty",
    ] {
        let file = Path::new(DIR).join(format!("{name}.toml"));
        let expected =
            std::fs::read_to_string(file.with_extension("expected")).expect("the expected file");
        let out = Command::new(env!("CARGO_BIN_EXE_hale"))
            .arg("check")
            .arg("-c")
            .arg(&file)
            .env_remove("HALE_SOCKET")
            .timeout(Duration::from_secs(20))
            .output()
            .expect("run hale check");
        assert_eq!(out.status.code(), Some(1), "{name}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), expected, "{name}");
        assert!(out.stdout.is_empty(), "{name}: stdout {:?}", String::from_utf8_lossy(&out.stdout));
    }
}

/// A missing file, a directory and an unreadable file each give one error naming the file and
/// what to do.
#[test]
fn files_that_cannot_be_read_are_named_with_a_fix() {
    let missing = Path::new(DIR).join("no-such-file.toml");
    let e = config::load(&missing).expect_err("a missing file");
    assert_eq!(e.len(), 1);
    assert_eq!(
        render(&e),
        "tests/bad_configs/no-such-file.toml: error: cannot read the config file: No such file or directory (os error 2)\n  help: name another file with `-c FILE`\ntests/bad_configs/no-such-file.toml: 1 error\n"
    );

    let e = config::load(Path::new(DIR)).expect_err("a directory");
    assert_eq!(e.len(), 1);
    assert_eq!(
        render(&e),
        "tests/bad_configs: error: cannot read the config file: Is a directory (os error 21)\n  help: `-c` names a file, such as tests/bad_configs/hale.toml\ntests/bad_configs: 1 error\n"
    );
}

/// A 20 MB file is refused at once with a clear error, without reading or parsing it all.
#[test]
fn a_huge_file_is_refused_quickly() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("huge.toml");
    let mut text = String::with_capacity(21 << 20);
    let mut n = 0;
    while text.len() < 20 << 20 {
        text.push_str(&format!("[components.c{n}]\ncommand = [\"./c\", \"{n}\"]\n\n"));
        n += 1;
    }
    std::fs::write(&path, &text).expect("write the huge file");
    let started = Instant::now();
    let e = config::load(&path).expect_err("a 20 MB config");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(e.len(), 1, "{e}");
    let text = e.to_string().replace(&path.display().to_string(), "huge.toml");
    assert_eq!(
        text,
        "huge.toml: error: the file is 20.0 MiB: a config file may be at most 10.0 MiB\n  help: is -c naming the right file? split the components among several files if it is"
    );
}

/// A file that never ends (a device, a FIFO that keeps writing) is read only up to the limit.
#[test]
fn an_endless_file_is_refused_without_reading_it_all() {
    let started = Instant::now();
    let e = config::load(Path::new("/dev/zero")).expect_err("/dev/zero is no config");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(e.len(), 1, "{e}");
    assert!(e.to_string().contains("a config file may be at most 10.0 MiB"), "{e}");
}

/// A file just under the limit (a machine-written config with 150,000 components) is parsed
/// whole, and its one error is found at its line, without a panic and in reasonable time.
#[test]
fn a_large_file_under_the_limit_is_parsed_whole() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("large.toml");
    let mut text = String::new();
    let mut n = 0;
    while text.len() < 9 << 20 {
        text.push_str(&format!("[components.c{n}]\ncommand = [\"./c\", \"{n}\"]\n\n"));
        n += 1;
    }
    text.push_str("[components.last]\ncomand = [\"./last\"]\n");
    let lines = text.lines().count();
    std::fs::write(&path, &text).expect("write the large file");
    let started = Instant::now();
    let e = config::load(&path).expect_err("one typo at the end");
    let took = started.elapsed();
    eprintln!("{n} components: {took:?}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["components.last", "components.last.comand"], "{e}");
    assert_eq!(e.errors[1].position.map(|p| p.line), Some(lines));
}
