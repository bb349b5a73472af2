//! rootsmith-init: the static PID 1 placed at `/init` in every image rootsmith builds.
//! (Filled in by the `init` issue.)

fn main() {}
