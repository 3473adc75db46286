//! In-process CheckPermission on the social-network example (filled in by the benchmark work).
fn main() {}
