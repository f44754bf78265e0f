//! libFuzzer entry point of the `signature-block` target (crates/upkg-fuzz).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    upkg_fuzz::Target::SignatureBlock.run(data);
});
