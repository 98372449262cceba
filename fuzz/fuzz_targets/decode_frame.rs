//! Fuzz target: see `aggrelog::testing::fuzzing::decode_frame`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| aggrelog::testing::fuzzing::decode_frame(data));
