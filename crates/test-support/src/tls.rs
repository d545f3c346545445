//! Test certificates made with the `openssl` command: a fresh test CA and a
//! server certificate for `127.0.0.1` signed by it. Used by
//! [`crate::RedisServer`] (`RedisServerOptions { tls: true, .. }`) and by the
//! HTTPS tests of the web server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The PEM files [`make_certificates`] writes, all in one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificates {
    /// The test CA's certificate (`ca.crt`): the root a client trusts.
    pub ca_cert: PathBuf,
    /// The server's certificate (`server.crt`), for IP `127.0.0.1`.
    pub cert: PathBuf,
    /// The server's private key (`server.key`), unencrypted.
    pub key: PathBuf,
}

impl Certificates {
    /// Where [`make_certificates`] writes its files in `dir` (made or not).
    pub fn in_dir(dir: &Path) -> Certificates {
        Certificates {
            ca_cert: dir.join("ca.crt"),
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
        }
    }
}

/// Writes a test CA (`ca.crt`, `ca.key`) and a server certificate for IP
/// `127.0.0.1` signed by it (`server.crt`, `server.key`) in `dir`, all
/// P-256 EC keys valid for two days; returns their paths.
///
/// # Panics
/// When `openssl` is not installed or fails (with its error output).
pub fn make_certificates(dir: &Path) -> Certificates {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run openssl ({e}); install it: apt-get install openssl")
            });
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=bp-test-ca"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
    ca.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
    ca.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    openssl(&ca);
    let mut csr = vec!["req", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(&csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]);
    Certificates::in_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_certificate_verifies_against_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let certs = make_certificates(dir.path());
        assert_eq!(certs, Certificates::in_dir(dir.path()));
        for f in [&certs.ca_cert, &certs.cert, &certs.key] {
            assert!(f.is_file(), "{} missing", f.display());
        }
        let out = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(&certs.ca_cert)
            .arg(&certs.cert)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
