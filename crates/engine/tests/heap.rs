//! `release_free_heap` in a process of its own (one test: the resident set it measures is
//! the whole process's, which concurrent tests would move).

#[test]
fn freed_heap_goes_back_to_the_system() {
    // 64 MiB in 4 KiB blocks, touched, then all but every 64th freed: the survivors pin
    // the heap's top, so glibc cannot trim it by itself and keeps the freed pages.
    let mut blocks: Vec<Box<[u8]>> = (0..16_384).map(|i| vec![i as u8; 4096].into()).collect();
    let survivors: Vec<Box<[u8]>> = blocks.iter().step_by(64).cloned().collect();
    blocks.clear();
    blocks.shrink_to_fit();
    let released = wisp_engine::release_free_heap();
    assert!(
        released > 32 << 20,
        "only {} KiB went back of about 63 MiB freed",
        released >> 10
    );
    // What is still in use is untouched.
    assert!(
        survivors
            .iter()
            .enumerate()
            .all(|(i, b)| b[4095] == (i * 64) as u8)
    );
}
