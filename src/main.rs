//! The `rootsmith` binary: parse arguments, run, and map errors to one line on stderr and
//! an exit code (0 success, 1 failure, 2 usage error; `boot --exec` exits with its command's status). The only user of anyhow.

fn main() {
    let code = match rootsmith::cli::run() {
        Ok(()) => 0,
        // `rootsmith boot --exec CMD`: CMD's own status, no message.
        Err(e)
            if e.downcast_ref::<rootsmith::cli::boot::ExitStatus>()
                .is_some() =>
        {
            e.downcast_ref::<rootsmith::cli::boot::ExitStatus>()
                .map_or(1, |s| s.0)
        }
        Err(e) => {
            eprintln!("rootsmith: error: {}", one_line(&e));
            1
        }
    };
    std::process::exit(code);
}

fn one_line(e: &anyhow::Error) -> String {
    // Each layer's message once, joined on one line.
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}
