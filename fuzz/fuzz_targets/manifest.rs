//! The manifest reader and validator (`spin.toml`): any text is either a manifest or an
//! error that names the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(err) = wisp_manifest::parse_str(text, Path::new("fuzz/spin.toml")) {
        let message = err.to_string();
        assert!(message.contains("spin.toml"), "{message}");
    }
});
