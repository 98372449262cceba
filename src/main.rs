//! The `aggrelog` command-line tool. See `aggrelog --help` and README.md.

mod cli;

fn main() {
    std::process::exit(cli::run());
}
