//! libFuzzer entry point of the `package` target (crates/upkg-fuzz).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    upkg_fuzz::Target::Package.run(data);
});

// The structure-aware mutations of the stable harness (digests fixed after a
// member changes, trees changed on disk), beside libFuzzer's own.
libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    let mut mutator = upkg_fuzz::Mutator::new(upkg_fuzz::Rng::new(seed.into()), &[]);
    let out = mutator.mutate(upkg_fuzz::Target::Package, &data[..size]);
    if out.len() > max_size || seed % 2 == 0 {
        return libfuzzer_sys::fuzzer_mutate(data, size, max_size);
    }
    data[..out.len()].copy_from_slice(&out);
    out.len()
});
