//! The `wxshop` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    wxshop::cli::main()
}
