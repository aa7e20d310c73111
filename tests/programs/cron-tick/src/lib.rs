//! `cron-tick`: a component for the cron trigger, exporting `handle-cron-event` from
//! the `fermyon:spin-cron@2.0.0` world of Spin's cron plugin (what spin-cron-sdk's
//! `#[cron_component]` generates).
//!
//! Each run prints `tick <timestamp> start` and `tick <timestamp> end`. Its
//! environment steers it: `TICK_SLEEP_MS=N` sleeps N ms between the two lines (to
//! test overlap), `TICK_FAIL=1` returns an error after printing.

wit_bindgen::generate!({
    path: "wit",
    world: "spin-cron",
    generate_all,
});

struct Tick;

impl Guest for Tick {
    fn handle_cron_event(metadata: Metadata) -> Result<(), Error> {
        println!("tick {} start", metadata.timestamp);
        if let Some(ms) = std::env::var("TICK_SLEEP_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        println!("tick {} end", metadata.timestamp);
        if std::env::var("TICK_FAIL").is_ok_and(|v| v == "1") {
            return Err(Error::Other("asked to fail".to_owned()));
        }
        Ok(())
    }
}

export!(Tick);
