//! The locked-app config layer of a registry artifact (written by `wisp registry push`,
//! `spin registry push` or anyone): turned into Wisp's LockedApp, or refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wisp_app::LockedApp;

fuzz_target!(|data: &[u8]| {
    if let Ok(app) = wisp_oci::fuzzing::registry_locked_app(data) {
        LockedApp::from_json(&app.to_json()).expect("the app read from a registry is valid");
    }
});
