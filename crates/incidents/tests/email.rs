//! The email notifier against a real SMTP server started by the test:
//! `aiosmtpd` (Debian's `python3-aiosmtpd`, run with `/usr/bin/python3`;
//! `scripts/setup test` installs it) with STARTTLS required, a test
//! certificate made with `openssl`, and a login. Open and resolve → two
//! mails with the right subjects, a plain-text and an HTML part, the
//! resolve threaded under the open (`In-Reply-To`/`References` = the
//! open's `Message-ID`, derived from the idempotency key); a wrong password
//! → a dead letter naming the notifier, without the password.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use incidents::hooks::HooksConfig;
use incidents::notifiers::parse_notifiers;
use serde_json::{Value, json};
use support::*;

const SERVER: &str = r#"
import asyncio, email, email.policy, json, os, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

port, cert, key, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]

class Handler:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        parts = [{"type": p.get_content_type(), "text": p.get_content()} for p in msg.walk() if not p.is_multipart()]
        record = {
            "tls": session.ssl is not None,
            "login": (session.auth_data or b"").decode() if session.authenticated else "",
            "from": envelope.mail_from, "rcpt": envelope.rcpt_tos,
            "subject": msg["Subject"], "messageId": msg["Message-ID"],
            "inReplyTo": msg["In-Reply-To"], "references": msg["References"],
            "contentType": msg.get_content_type(), "parts": parts,
        }
        n = len([f for f in os.listdir(out) if f.endswith(".json")])
        with open(os.path.join(out, f"{n:03}.json.tmp"), "w") as f:
            json.dump(record, f)
        os.rename(os.path.join(out, f"{n:03}.json.tmp"), os.path.join(out, f"{n:03}.json"))
        return "250 OK"

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"bp" and auth_data.password == b"right-pass"
    return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)

ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
c = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True,
               authenticator=authenticator, auth_required=True, auth_require_tls=True)
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
"#;

struct Smtp {
    child: Child,
    port: u16,
    out: PathBuf,
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_smtp() -> Smtp {
    let python = Path::new("/usr/bin/python3");
    let probe = Command::new(python)
        .args(["-c", "import aiosmtpd"])
        .status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "the email tests need Debian's python3-aiosmtpd for /usr/bin/python3: run scripts/setup test"
    );
    let dir = tempfile::tempdir().unwrap();
    // A test CA, and a server certificate for 127.0.0.1 it signed.
    let p = |name: &str| dir.path().join(name);
    let (ca, cert, key) = (p("ca.pem"), p("cert.pem"), p("key.pem"));
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let openssl = |args: &[&str]| {
        let ok = Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(ok.success(), "openssl {args:?} failed");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=bp-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
    let out = dir.path().join("mail");
    std::fs::create_dir(&out).unwrap();
    let script = dir.path().join("smtpd.py");
    std::fs::write(&script, SERVER).unwrap();
    let port = test_support::free_port();
    let mut child = Command::new(python)
        .arg(&script)
        .arg(port.to_string())
        .arg(&cert)
        .arg(&key)
        .arg(&out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready", "the SMTP server did not start");
    Smtp {
        child,
        port,
        out,
        ca,
        _dir: dir,
    }
}

fn mails(s: &Smtp) -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(&s.out)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

fn hooks(s: &Smtp, password: &str, extra: &Value) -> HooksConfig {
    let dir = std::env::temp_dir().join("bp-email-no-hooks");
    let mut c = config(&dir, extra.clone());
    c.notifiers = parse_notifiers(
        Some(&json!([{
            "name": "ops-mail", "type": "email", "smtp": format!("smtp://127.0.0.1:{}", s.port),
            "caFile": s.ca, "username": "bp", "password": password,
            "from": "bp-monitoring <alerts@bp.example>", "to": ["ops@bp.example"], "cc": ["lead@bp.example"]
        }])),
        "alerting.notifiers",
        Some("https://bp.example"),
    )
    .unwrap_or_else(|p| panic!("{p:?}"));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_and_resolve_are_two_threaded_mails_over_starttls() {
    capture_logs();
    let smtp = start_smtp();
    let config = hooks(&smtp, "right-pass", &json!({}));
    let mut inc = incident("Disk <full>", "web-1", 1_700_000_000_000, 93.456);
    inc.severity = Some("critical".into());
    let (dispatcher, mut rx) = start(&config);
    dispatcher.submit(1, opened(&inc)).unwrap();
    dispatcher
        .submit(2, resolved(&inc, 1_700_000_125_000))
        .unwrap();
    let done = completions(&mut rx, 2).await;
    dispatcher.shutdown(DEADLINE).await;
    assert!(done.iter().all(|c| c.failures.is_empty()), "{done:?}");
    let m = mails(&smtp);
    assert_eq!(m.len(), 2, "{m:#?}");
    for mail in &m {
        assert_eq!(mail["tls"], true, "STARTTLS: {mail}");
        assert_eq!(mail["login"], "bp");
        assert_eq!(mail["from"], "alerts@bp.example");
        assert_eq!(mail["rcpt"], json!(["ops@bp.example", "lead@bp.example"]));
        assert_eq!(mail["contentType"], "multipart/alternative");
        let types: Vec<&str> = mail["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["text/plain", "text/html"]);
    }
    let (open, res) = (&m[0], &m[1]);
    assert_eq!(open["subject"], "[FIRING] Disk <full> on web-1");
    assert_eq!(res["subject"], "[RESOLVED] Disk <full> on web-1");
    let open_id = format!("<{}.opened@bp-monitoring>", inc.id);
    assert_eq!(open["messageId"], json!(open_id));
    assert_eq!(
        res["messageId"],
        json!(format!("<{}.resolved@bp-monitoring>", inc.id))
    );
    assert_eq!(res["inReplyTo"], json!(open_id), "the same thread");
    assert_eq!(res["references"], json!(open_id));
    let text = open["parts"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("Severity: critical") && text.contains("93.46"),
        "{text}"
    );
    let html = open["parts"][1]["text"].as_str().unwrap();
    assert!(
        html.contains("Disk &lt;full&gt;"),
        "escaped in HTML: {html}"
    );
    assert!(!html.contains("Disk <full>"), "{html}");
    assert!(
        // minijinja's HTML escaping writes `/` as `&#x2f;` (HTML readers decode it).
        html.replace("&#x2f;", "/")
            .contains("href=\"https://bp.example/#incident="),
        "{html}"
    );
    assert!(
        res["parts"][0]["text"]
            .as_str()
            .unwrap()
            .contains("after 2m 5s"),
        "{res}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_dead_letter_naming_the_notifier_without_the_password() {
    capture_logs();
    let smtp = start_smtp();
    let config = hooks(&smtp, "WRONG-PASS-4242", &json!({ "maxAttempts": 2 }));
    let inc = incident("Errors", "node-1", 1_700_000_000_000, 5.0);
    let (dispatcher, mut rx) = start(&config);
    dispatcher.submit(1, opened(&inc)).unwrap();
    let c = completions(&mut rx, 1).await.remove(0);
    dispatcher.shutdown(DEADLINE).await;
    assert_eq!(c.failures.len(), 1, "{c:?}");
    let f = &c.failures[0];
    assert_eq!((f.hook.as_str(), f.attempts), ("ops-mail", 2));
    assert!(f.error.starts_with("hook ops-mail: "), "{}", f.error);
    assert!(
        f.error.contains("535") || f.error.to_lowercase().contains("auth"),
        "{}",
        f.error
    );
    assert!(!f.error.contains("WRONG-PASS-4242"), "{}", f.error);
    assert!(
        log_lines_with("WRONG-PASS-4242").is_empty(),
        "the password was logged"
    );
    assert!(
        !format!("{config:?}").contains("WRONG-PASS-4242"),
        "Debug shows the password"
    );
    assert!(mails(&smtp).is_empty());
}

#[test]
fn bad_email_settings_are_named_by_path() {
    let base = json!({ "name": "m", "type": "email", "smtp": "smtp://mail.example:587",
                       "from": "a@b.example", "to": ["c@d.example"] });
    parse_notifiers(Some(&json!([base.clone()])), "n", None).unwrap();
    let with = |k: &str, v: Value| {
        let mut e = base.clone();
        e[k] = v;
        e
    };
    let without = |k: &str| {
        let mut e = base.clone();
        e.as_object_mut().unwrap().remove(k);
        e
    };
    for (entry, path) in [
        (without("smtp"), "n[0].smtp"),
        (with("smtp", json!("http://mail.example")), "n[0].smtp"),
        (without("from"), "n[0].from"),
        (with("from", json!("not an address")), "n[0].from"),
        (with("to", json!([])), "n[0].to"),
        (with("to", json!(["ok@x.example", "bad"])), "n[0].to[1]"),
        (with("starttls", json!("maybe")), "n[0].starttls"),
        (with("username", json!("u")), "n[0].password"),
        (with("caFile", json!("/nonexistent/ca.pem")), "n[0].caFile"),
        (with("url", json!("http://x")), "n[0].url"),
        (
            with("template", json!({ "title": "x" })),
            "n[0].template.title",
        ),
    ] {
        let e = parse_notifiers(Some(&json!([entry])), "n", None).unwrap_err();
        assert!(
            e.iter().any(|p| p.path == path),
            "{entry}: expected {path}, got {e:?}"
        );
    }
    // A password never goes over an unencrypted connection.
    let mut plain = with("starttls", json!("off"));
    plain["username"] = json!("u");
    plain["password"] = json!("p");
    let e = parse_notifiers(Some(&json!([plain])), "n", None).unwrap_err();
    assert!(e.iter().any(|p| p.path == "n[0].starttls"), "{e:?}");
}
