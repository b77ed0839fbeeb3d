#![no_main]

libfuzzer_sys::fuzz_target!(
    init: shmipc_fuzz::support::tight_timers(),
    |data: &[u8]| shmipc_fuzz::queues::spsc_ops(data)
);
