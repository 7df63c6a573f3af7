//! Fuzz target `notify`: any bytes as an sd_notify datagram through `hale::notify::parse`. It
//! must never panic, give at most one message a line, and keep `STATUS=` within the output
//! limit.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let messages = hale::notify::parse(data);
    assert!(messages.len() <= data.iter().filter(|&&b| b == b'\n').count() + 1);
    for m in &messages {
        if let hale::NotifyMessage::Status(text) = m {
            assert!(text.len() <= hale_core::OUTPUT_LIMIT + 3, "status of {} bytes", text.len());
        }
    }
});
