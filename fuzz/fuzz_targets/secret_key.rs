//! libFuzzer entry point of the `secret-key` target (crates/upkg-fuzz).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    upkg_fuzz::Target::SecretKey.run(data);
});
