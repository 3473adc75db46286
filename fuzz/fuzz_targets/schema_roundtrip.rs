//! parse → compile → print → compile: no input may panic, and whatever
//! compiles must print to text that compiles to the same schema and prints
//! identically.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    let Ok(schema) = trellis::schema::compile(source) else { return };
    let printed = trellis::schema::format(&schema);
    let again = trellis::schema::compile(&printed)
        .unwrap_or_else(|e| panic!("printed form does not compile: {e}\n{printed}"));
    assert!(schema == again, "printed form compiles differently:\n{printed}");
    assert_eq!(printed, trellis::schema::format(&again), "printing is not stable");
});
