//! `bp-docs OUT_DIR`: writes the man pages and shell completions of
//! bp-alerter and bp-collector under `OUT_DIR` (see the library).

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: bp-docs OUT_DIR");
        return ExitCode::from(2);
    };
    match bp_docs::write_all(std::path::Path::new(&out)) {
        Ok(w) => {
            for p in w.man.iter().chain(&w.completions) {
                println!("{}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bp-docs: {e}");
            ExitCode::from(1)
        }
    }
}
