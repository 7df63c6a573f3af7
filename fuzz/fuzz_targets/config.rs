//! Fuzz target `config`: any bytes as a `hale.toml` through `hale_cli::config::parse_bytes`
//! (the loader after the file is read: UTF-8 check, TOML, the validating walk). It must never
//! panic, and a refusal must carry at least one error, each with a position and a fix, that
//! renders without panicking.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(errors) = hale_cli::config::parse_bytes(data, Path::new("/fuzz/hale.toml")) {
        assert!(!errors.is_empty(), "a refusal without an error");
        for e in &errors {
            assert!(e.position.is_some(), "no position: {e}");
            assert!(e.help.is_some(), "no fix: {e}");
        }
        let _ = errors.to_string();
        let _ = errors.summary();
    }
});
