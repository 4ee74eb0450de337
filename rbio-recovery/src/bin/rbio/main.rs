//! The `rbio` command (being built).
fn main() {}
