//! Fuzz target: see `aggrelog::testing::fuzzing::open_arbitrary`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| aggrelog::testing::fuzzing::open_arbitrary(data));
