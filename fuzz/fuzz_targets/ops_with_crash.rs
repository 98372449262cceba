//! Fuzz target: see `aggrelog::testing::fuzzing::ops_with_crash`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| aggrelog::testing::fuzzing::ops_with_crash(data));
