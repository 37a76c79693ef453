//! A secret for a loopback token endpoint never goes to a proxy named by the environment.
//!
//! `HTTP_PROXY` / `ALL_PROXY` point at a local listener that only counts connections. The
//! environment is process-wide, so this binary holds this one test, which sets the variables
//! before building any client, on a runtime it builds itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tower_bearer::secret::ClientSecret;
use tower_bearer::source::{ClientAuth, ClientCredentials};
use tower_bearer::{ErrorKind, TokenSource};

const SECRET: &str = "loopback-only-secret-4d1f";

/// A "proxy" that accepts connections, counts them and closes them.
async fn counting_proxy() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (addr, count)
}

/// A token endpoint on 127.0.0.1 and on ::1 (one router, two listeners) counting the requests
/// that carry `SECRET`.
async fn token_server() -> (u16, Option<u16>, Arc<AtomicUsize>) {
    let got = Arc::new(AtomicUsize::new(0));
    let seen = got.clone();
    let router = axum::Router::new().route(
        "/token",
        axum::routing::post(move |body: bytes::Bytes| {
            let seen = seen.clone();
            async move {
                let form: Vec<(String, String)> =
                    form_urlencoded::parse(&body).into_owned().collect();
                if form
                    .iter()
                    .any(|(n, v)| n == "client_secret" && v == SECRET)
                {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
                axum::Json(serde_json::json!({
                    "access_token": "tok", "token_type": "Bearer", "expires_in": 60
                }))
            }
        }),
    );
    let v4 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let v4_port = v4.local_addr().unwrap().port();
    tokio::spawn(axum::serve(v4, router.clone()).into_future());
    // Not every sandbox has IPv6 loopback; the IPv6 forms are checked where it exists.
    let v6_port = match tokio::net::TcpListener::bind("[::1]:0").await {
        Ok(v6) => {
            let port = v6.local_addr().unwrap().port();
            tokio::spawn(axum::serve(v6, router).into_future());
            Some(port)
        }
        Err(_) => None,
    };
    (v4_port, v6_port, got)
}

fn set_proxy_env(names: &[&str], proxy: SocketAddr) {
    let all = [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "REQUEST_METHOD",
    ];
    // SAFETY: this binary runs one test; nothing else reads the environment concurrently
    // (the runtime's worker runs only while the test itself is blocked on it).
    unsafe {
        for name in all {
            std::env::remove_var(name);
        }
        for name in names {
            std::env::set_var(name, format!("http://{proxy}"));
        }
    }
}

async fn fetch(url: &str) -> Result<(), tower_bearer::Error> {
    let source = ClientCredentials::builder(
        url,
        ClientAuth::client_secret_post("cid", ClientSecret::new(SECRET)),
    )
    .build()?;
    let token = source.fetch().await?;
    assert_eq!(token.secret(), "tok");
    Ok(())
}

#[test]
fn loopback_token_endpoints_bypass_proxies_from_the_environment() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (proxy, proxied) = counting_proxy().await;
        let (v4, v6, served) = token_server().await;

        let mut urls = vec![
            format!("http://127.0.0.1:{v4}/token"),
            format!("http://localhost:{v4}/token"),
            // Not in /etc/hosts as such: reaches loopback only because the client pins it.
            format!("http://LOCALHOST.:{v4}/token"),
        ];
        if let Some(v6) = v6 {
            urls.push(format!("http://[::1]:{v6}/token"));
            urls.push(format!("http://[::ffff:127.0.0.1]:{v4}/token"));
        }

        // (variables, whether they proxy https too)
        for (names, https) in [
            (&["HTTP_PROXY", "HTTPS_PROXY"][..], true),
            (&["http_proxy"][..], false),
            (&["ALL_PROXY"][..], true),
            (&["all_proxy"][..], true),
        ] {
            set_proxy_env(names, proxy);

            // The environment is in effect: a plain reqwest client does use the proxy.
            let before = proxied.load(Ordering::SeqCst);
            let plain = reqwest::Client::new();
            let _ = plain
                .get(format!("http://127.0.0.1:{v4}/token"))
                .send()
                .await;
            assert_eq!(proxied.load(Ordering::SeqCst), before + 1, "{names:?}");

            // The token sources' client, built now with the same environment, does not.
            let before = (
                proxied.load(Ordering::SeqCst),
                served.load(Ordering::SeqCst),
            );
            for url in &urls {
                fetch(url)
                    .await
                    .unwrap_or_else(|e| panic!("{url} with {names:?}: {e}"));
            }
            assert_eq!(proxied.load(Ordering::SeqCst), before.0, "{names:?}");
            assert_eq!(
                served.load(Ordering::SeqCst),
                before.1 + urls.len(),
                "{names:?}"
            );

            // Other hosts still go through the environment's proxy (here it hangs up, so the
            // fetch fails as a transport error, and nothing leaves the machine).
            if https {
                let err = fetch("https://token.example.invalid/token")
                    .await
                    .unwrap_err();
                assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
                assert_eq!(proxied.load(Ordering::SeqCst), before.0 + 1, "{names:?}");
            }
        }
    });
}
