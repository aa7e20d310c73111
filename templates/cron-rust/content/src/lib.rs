wit_bindgen::generate!({
    path: "wit",
    world: "spin-cron",
    generate_all,
});

struct Job;

impl Guest for Job {
    /// Runs on every tick of the schedule, in a fresh instance.
    fn handle_cron_event(metadata: Metadata) -> Result<(), Error> {
        println!("{{project-name}} ran for the tick at {}", metadata.timestamp);
        Ok(())
    }
}

export!(Job);
