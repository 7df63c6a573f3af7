//! Fuzz target `http_status`: the http check's verdict on an answer,
//! `hale::probe::http::judge`, which the check itself calls once the exchange is over. The
//! input is split into a status code (two bytes), a status range as configured (`"200-399"`,
//! `"204"`, or anything: what does not parse falls back to the default), the text the body must
//! contain (empty: none), and the body. The verdict must never panic, must be healthy exactly
//! when the status is in range and the body holds the text, and must keep its output within the
//! limit; a range that parses prints back to the same range.

#![no_main]

use hale::probe::StatusRange;
use hale::probe::http::judge;
use libfuzzer_sys::fuzz_target;

fn line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((code, rest)) = data.split_first_chunk::<2>() else { return };
    let status = u16::from_be_bytes(*code);
    let (range_text, rest) = line(rest);
    let (needle, body) = line(rest);
    let range = match String::from_utf8_lossy(range_text).parse::<StatusRange>() {
        Ok(range) => {
            let printed = range.to_string();
            assert_eq!(printed.parse::<StatusRange>().ok(), Some(range), "{printed}");
            range
        }
        Err(_) => StatusRange::default(),
    };
    let needle = String::from_utf8_lossy(needle);
    let needle = (!needle.is_empty()).then_some(needle.as_ref());

    let verdict = judge("http GET http://fuzz/", range, needle, status, body);

    let holds = needle.is_none_or(|n| body.windows(n.len()).any(|w| w == n.as_bytes()));
    assert_eq!(verdict.is_ok(), range.contains(status) && holds, "{verdict:?}");
    let output = match &verdict {
        Ok(output) => output,
        Err(e) => {
            assert!(e.reason.starts_with("http GET http://fuzz/: "), "{}", e.reason);
            &e.output
        }
    };
    assert!(output.starts_with(&format!("status {status}")), "{output}");
    assert!(output.len() <= hale_core::OUTPUT_LIMIT + 3, "output of {} bytes", output.len());
});
