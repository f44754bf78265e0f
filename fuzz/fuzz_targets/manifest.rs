//! libFuzzer entry point of the `manifest` target (crates/upkg-fuzz).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    upkg_fuzz::Target::Manifest.run(data);
});
