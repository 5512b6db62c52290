//! PostgreSQL for the tests that need a database of their own beside the service's: the server
//! (skipped with a message when it cannot be reached), a fresh database dropped afterwards, and
//! a TCP proxy whose link a test cuts to make a server unreachable for one service only.

use tokio::task::JoinHandle;

/// The PostgreSQL server for tests that need one (`TEST_POSTGRES_URL`, default the local
/// server). Returns `None`, after saying so, when it cannot be reached, unless
/// `TEST_REQUIRE_SERVICES=1` makes its absence a failure.
pub async fn postgres_admin_url() -> Option<String> {
    let url = std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let reachable = match sea_orm::Database::connect(&url).await {
        Ok(db) => db.ping().await.is_ok(),
        Err(_) => false,
    };
    if reachable {
        return Some(url);
    }
    if std::env::var("TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("PostgreSQL is required (TEST_REQUIRE_SERVICES=1) but {url} cannot be reached");
    }
    eprintln!(
        "skipped: PostgreSQL at {url} cannot be reached (set TEST_REQUIRE_SERVICES=1 to fail instead)"
    );
    None
}

/// A TCP proxy in front of a real server whose link a test can cut and restore, to simulate the
/// server becoming unreachable without stopping it for everyone else.
pub struct CuttableProxy {
    pub port: u16,
    link_up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
    accept_loop: JoinHandle<()>,
}

impl CuttableProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let link_up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections = std::sync::Arc::new(std::sync::Mutex::new(tokio::task::JoinSet::new()));
        let accept_loop = tokio::spawn({
            let link_up = link_up.clone();
            let connections = connections.clone();
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !link_up.load(Ordering::SeqCst) {
                        drop(client); // Down: the connection is closed at once.
                        continue;
                    }
                    let upstream = upstream.clone();
                    connections
                        .lock()
                        .expect("connections lock")
                        .spawn(async move {
                            if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        });
                }
            }
        });
        Self {
            port,
            link_up,
            connections,
            accept_loop,
        }
    }

    /// Breaks every open connection and refuses new ones.
    pub fn cut(&self) {
        self.link_up
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.connections
            .lock()
            .expect("connections lock")
            .abort_all();
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.link_up
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
        self.connections
            .lock()
            .expect("connections lock")
            .abort_all();
    }
}

/// A fresh PostgreSQL database for one test, dropped afterwards.
pub struct TestDatabase {
    admin_url: String,
    pub name: String,
}

impl TestDatabase {
    pub async fn create(admin_url: &str) -> Self {
        use sea_orm::ConnectionTrait;
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let admin = sea_orm::Database::connect(admin_url)
            .await
            .expect("admin connection");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        Self {
            admin_url: admin_url.to_owned(),
            name,
        }
    }

    /// The URL of this database on the same server.
    pub fn url(&self) -> String {
        let (server, _) = self
            .admin_url
            .rsplit_once('/')
            .expect("a database in the admin URL");
        format!("{server}/{}", self.name)
    }

    /// A TCP proxy in front of the server, and the URL of this database through it: cutting the
    /// proxy makes the database unreachable for whoever uses that URL, and no one else.
    pub async fn behind_proxy(&self) -> (CuttableProxy, String) {
        let (scheme, rest) = self.admin_url.split_once("://").expect("a URL");
        let authority = rest.split('/').next().expect("an authority");
        let (user, server) = authority
            .rsplit_once('@')
            .map_or(("", authority), |(user, server)| (user, server));
        let proxy = CuttableProxy::start(server.to_owned()).await;
        let user = if user.is_empty() {
            String::new()
        } else {
            format!("{user}@")
        };
        let url = format!("{scheme}://{user}127.0.0.1:{}/{}", proxy.port, self.name);
        (proxy, url)
    }

    /// Drops the database (closing any connection still open to it).
    pub async fn drop_database(self) {
        use sea_orm::ConnectionTrait;
        if let Ok(admin) = sea_orm::Database::connect(&self.admin_url).await {
            let _ = admin
                .execute_unprepared(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .await;
        }
    }
}
