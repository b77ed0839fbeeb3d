#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shmipc_fuzz::inspect::inspect(data));
