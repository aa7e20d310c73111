//! What a registry answers for an app reference: the image manifest (bounded layer
//! count and sizes), and artifact paths, which never escape their directory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wisp_oci::fuzzing::image_manifest(data, None);
    let _ =
        wisp_oci::fuzzing::image_manifest(data, Some("application/vnd.oci.image.manifest.v1+json"));
    if let Ok(path) = std::str::from_utf8(data)
        && let Ok(normalized) = wisp_oci::fuzzing::artifact_path(path)
    {
        assert!(!normalized.is_empty());
        assert!(!normalized.starts_with('/'), "{normalized:?}");
        assert!(
            normalized
                .split('/')
                .all(|part| part != ".." && !part.is_empty()),
            "{normalized:?}"
        );
    }
});
