//! TLS-4 and TLS-5 in a real browser: headless Chromium enforces CORS and the docs page's CSP
//! exactly as users' browsers do.
//!
//! Chromium comes from the system (`apt install chromium`; Google Chrome works too; `CHROMIUM`
//! names another binary).
//! Without it these tests say so and pass, unless `TEST_REQUIRE_BROWSER=1` (CI) makes its
//! absence a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{EndpointExt, Route, Server, handler, web::Html};
use sea_orm::{EntityTrait, PaginatorTrait};

use crate::helpers::{TestApp, settings, spawn_app_with};

fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| {
            [
                "chromium",
                "chromium-browser",
                "google-chrome",
                "google-chrome-stable",
            ]
            .map(|name| dir.join(name))
        })
        .find(|candidate| candidate.is_file())
}

/// The browser, or `None` (after saying so) when it is missing and not required.
fn browser_or_skip() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        assert!(
            std::env::var("TEST_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "TEST_REQUIRE_BROWSER=1 but no chromium on PATH (apt install chromium)"
        );
        eprintln!("skipped: no chromium on PATH (apt install chromium)");
    }
    found
}

/// Base64 SHA-256 of the serving key's SubjectPublicKeyInfo: Chromium trusts exactly this key
/// (`--ignore-certificate-errors-spki-list`), the development CA stays out of its store.
fn spki_pin(app: &TestApp) -> String {
    let dir = app
        .ca_cert
        .as_deref()
        .and_then(Path::parent)
        .expect("self-signed mode");
    let key_pem = std::fs::read(dir.join("server-key.pem")).expect("server key");
    use rustls_pki_types::pem::PemObject;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(&key_pem).expect("PEM key");
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .expect("a supported key");
    let spki = signing_key.public_key().expect("public key");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki.as_ref());
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// Loads `url` headless; returns the DOM after scripts ran and the browser's log (console
/// messages, including CSP violations, appear there as `CONSOLE` lines).
async fn load(browser: PathBuf, url: String, spki_pin: String) -> (String, String) {
    tokio::task::spawn_blocking(move || {
        let profile = tempfile::tempdir().expect("profile dir");
        let output = Command::new(&browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--enable-logging=stderr",
                "--v=0",
                "--virtual-time-budget=15000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--ignore-certificate-errors-spki-list={spki_pin}"))
            .arg("--dump-dom")
            .arg(&url)
            .output()
            .expect("run chromium");
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .expect("browser task")
}

/// A page that calls the API with `fetch`, with credentials, and writes what happened.
#[handler]
fn calling_page(poem::web::Data(api): poem::web::Data<&String>) -> Html<String> {
    Html(format!(
        r#"<!doctype html><html><body><p id="result">pending</p><script>
const api = "{api}";
// The bearer token arrives in the fragment, which is never sent to the page's server.
const token = decodeURIComponent(location.hash.slice(1));
async function call(name, init, path) {{
  try {{ const r = await fetch(api + path, init); return name + ":" + r.status; }}
  catch (e) {{ return name + ":blocked"; }}
}}
(async () => {{
  const post = await call("post", {{
    method: "POST", credentials: "include",
    headers: {{ "content-type": "application/json", "authorization": "Bearer " + token }},
    body: JSON.stringify({{ email: "browser@example.com", name: "Browser User", role: "user",
                            password: "plover-quartz-lantern-9" }})
  }}, "/v1/users");
  const get = await call("get", {{ credentials: "include" }}, "/health/live");
  document.getElementById("result").textContent = "RESULT " + post + " " + get;
}})();
</script></body></html>"#
    ))
}

/// Serves [`calling_page`] on a free port; returns its origin.
async fn page_origin(api: String) -> String {
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .expect("bind");
    let address = acceptor.local_addr()[0]
        .as_socket_addr()
        .copied()
        .expect("socket address");
    tokio::spawn(
        Server::new_with_acceptor(acceptor).run(Route::new().at("/", calling_page).data(api)),
    );
    format!("http://{address}")
}

fn result_line(dom: &str) -> &str {
    dom.split("RESULT ")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or("no result")
}

#[tokio::test]
async fn a_page_from_an_allowed_origin_can_call_the_api_and_a_foreign_one_cannot() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    // The API's address is only known once it runs, and the pages' origins must be in its
    // config: bind the pages first, pointing at a port reserved for the API.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").expect("reserve a port");
    let api_port = reserved.local_addr().expect("address").port();
    drop(reserved);
    let api = format!("https://127.0.0.1:{api_port}");
    let allowed = page_origin(api.clone()).await;
    let foreign = page_origin(api.clone()).await;
    let app = spawn_app_with(&format!(
        "[server]\nport = {api_port}\n[cors]\nallowed_origins = [\"{allowed}\"]\n"
    ))
    .await;
    let pin = spki_pin(&app);

    let token = &app.admin_token;
    let (dom, log) = load(browser.clone(), format!("{allowed}/#{token}"), pin.clone()).await;
    assert_eq!(
        result_line(&dom),
        "post:201 get:200",
        "allowed origin; log:\n{log}"
    );

    let (dom, log) = load(browser, format!("{foreign}/#{token}"), pin).await;
    assert_eq!(
        result_line(&dom),
        "post:blocked get:blocked",
        "foreign origin; log:\n{log}"
    );

    // The foreign page's POST never reached the handler: its preflight failed.
    let settings = settings(app.data_dir.path(), "");
    let db = app::persistence::connect(&settings.database)
        .await
        .expect("open the database");
    let users = app::persistence::users::Entity::find()
        .count(&db)
        .await
        .expect("count");
    assert_eq!(
        users, 2,
        "the administrator and the allowed origin's user, nobody else"
    );
}

#[tokio::test]
async fn the_docs_page_renders_under_its_csp_without_violations() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    let app = spawn_app_with("").await;
    let pin = spki_pin(&app);
    let (dom, log) = load(browser, app.url("/docs"), pin).await;
    let violations: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("Content Security Policy") || line.contains("Refused to"))
        .collect();
    assert!(
        violations.is_empty(),
        "CSP violations:\n{}",
        violations.join("\n")
    );
    // Swagger UI ran: it rendered an operation block for the documented routes.
    assert!(
        dom.contains("opblock"),
        "the docs page did not render; log:\n{log}"
    );
}
