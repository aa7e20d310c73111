//! The runtime-config reader (`--runtime-config-file`): any text is a config or an error
//! that names the file. Relative paths in it point under a directory that does not exist.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use wisp_host::RuntimeConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("/nonexistent/wisp-fuzz/runtime-config.toml");
    if let Err(err) = RuntimeConfig::from_str(text, file) {
        let message = err.to_string();
        assert!(message.contains("runtime-config.toml"), "{message}");
    }
});
