//! libFuzzer entry point of the `trailer` target (crates/upkg-fuzz).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    upkg_fuzz::Target::Trailer.run(data);
});
