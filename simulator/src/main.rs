//! `simulator`: the command line of the simulation harness.

fn main() {
    eprintln!("simulator: nothing to run yet (see issues 3 and 12)");
    std::process::exit(2);
}
