fn main() -> std::process::ExitCode {
    rotor::cli::main()
}
