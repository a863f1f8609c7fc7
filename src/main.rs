fn main() -> std::process::ExitCode {
    rotor::hygiene::no_core_dumps();
    rotor::cli::main()
}
