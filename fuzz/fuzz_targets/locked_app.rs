//! The LockedApp reader (what the node stores and a registry or a foreign tool hands
//! over): what it accepts it writes back to JSON that reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wisp_app::LockedApp;

fuzz_target!(|data: &[u8]| {
    let Ok(app) = LockedApp::from_json(data) else {
        return;
    };
    let json = app.to_json();
    let again = LockedApp::from_json(&json).expect("a LockedApp's own JSON reads back");
    assert_eq!(again.to_json(), json);
});
