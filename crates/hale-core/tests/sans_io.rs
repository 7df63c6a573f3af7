//! The core stays sans-IO: no dependencies at all, and no clock, sleep, process, network, file
//! or serde use in its source. clippy.toml bans the std calls at lint time; this test also
//! catches a dependency or an import slipping in, even when clippy is not run.

use std::path::Path;

#[test]
fn hale_core_has_no_dependencies() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .expect("read Cargo.toml");
    let deps = manifest
        .split("\n[")
        .find(|section| section.starts_with("dependencies]"))
        .expect("a [dependencies] section");
    let entries: Vec<&str> = deps
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(entries.is_empty(), "hale-core must not depend on anything: {entries:?}");
}

#[test]
fn hale_core_source_touches_no_clock_process_network_file_or_serde() {
    let forbidden = [
        "Instant::now",
        "SystemTime",
        "thread::sleep",
        "std::process",
        "std::net",
        "std::fs",
        "std::io",
        "tokio",
        "serde",
        "libc",
        "nix::",
    ];
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    for entry in std::fs::read_dir(&src).expect("read src") {
        let path = entry.expect("dir entry").path();
        let text = std::fs::read_to_string(&path).expect("read source");
        // Comments may talk about what the core does not do; code may not do it.
        let code: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect();
        for word in forbidden {
            for line in &code {
                assert!(!line.contains(word), "{} uses {word}: {line}", path.display());
            }
        }
        checked += 1;
    }
    assert!(checked >= 3, "expected the core's source files, found {checked}");
}
