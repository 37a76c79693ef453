//! The `token_endpoint` span around every call the built-in sources make, with the field names
//! of OpenTelemetry's HTTP client conventions, so that `tracing-opentelemetry` exports it as
//! an HTTP client span.

use tracing::Instrument as _;
use tracing::field::Empty;

use super::{HttpClient, HttpRequest, HttpResponse};
use crate::Error;

/// Send `request` through `client` inside a `token_endpoint` span.
///
/// Its fields: `otel.kind` (`client`), `otel.name` and `http.request.method` (the method),
/// `url.scheme`, `server.address`, `server.port`, `url.path` (never the query: it can hold a
/// refresh token), then `http.response.status_code` and, for a failure, `error.type` (the
/// status code of a 4xx or 5xx answer, else the [`ErrorKind`](crate::ErrorKind), `transient`,
/// `config` ...). No header, body or token.
pub(crate) async fn traced(
    client: &dyn HttpClient,
    request: HttpRequest,
) -> Result<HttpResponse, Error> {
    let uri = request.uri();
    let port = uri.port_u16().or(match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    });
    let span = tracing::info_span!(
        "token_endpoint",
        otel.kind = "client",
        otel.name = request.method().as_str(),
        http.request.method = request.method().as_str(),
        url.scheme = uri.scheme_str(),
        server.address = uri.host(),
        server.port = port,
        url.path = uri.path(),
        http.response.status_code = Empty,
        error.type = Empty,
    );
    let result = client.execute(request).instrument(span.clone()).await;
    match &result {
        Ok(response) => {
            let status = response.status();
            span.record("http.response.status_code", status.as_u16());
            if status.is_client_error() || status.is_server_error() {
                span.record("error.type", status.as_str());
            }
        }
        Err(err) => {
            if let Some(status) = err.status() {
                span.record("http.response.status_code", status.as_u16());
            }
            span.record("error.type", err.kind().to_string());
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use tracing::span::{Attributes, Id, Record};
    use tracing_subscriber::layer::{Context, SubscriberExt as _};

    use super::super::HttpFuture;
    use super::*;
    use crate::secret::ClientSecret;
    use crate::source::{ClientAuth, ClientCredentials};
    use crate::{ErrorKind, TokenCache};

    const CLIENT_SECRET: &str = "the-client-secret";
    const ACCESS_TOKEN: &str = "the-access-token";
    const QUERY_SECRET: &str = "q-secret";

    /// A span's name and its fields, as text.
    type Captured = (String, Vec<(String, String)>);

    /// Every span, by id.
    #[derive(Clone, Default)]
    struct Spans(Arc<Mutex<HashMap<u64, Captured>>>);

    struct Fields<'a>(&'a mut Vec<(String, String)>);

    impl tracing::field::Visit for Fields<'_> {
        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            self.0.push((field.name().to_owned(), value.to_owned()));
        }
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            self.0.push((field.name().to_owned(), format!("{value:?}")));
        }
    }

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Spans {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
            let mut fields = Vec::new();
            attrs.record(&mut Fields(&mut fields));
            let name = attrs.metadata().name().to_owned();
            self.0.lock().unwrap().insert(id.into_u64(), (name, fields));
        }
        fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
            if let Some((_, fields)) = self.0.lock().unwrap().get_mut(&id.into_u64()) {
                values.record(&mut Fields(fields));
            }
        }
    }

    impl Spans {
        fn field(&self, span: &str, field: &str) -> Option<String> {
            let spans = self.0.lock().unwrap();
            let (_, fields) = spans.values().find(|(name, _)| name == span)?;
            fields
                .iter()
                .rev()
                .find(|(name, _)| name == field)
                .map(|(_, v)| v.clone())
        }
        fn everything(&self) -> String {
            format!("{:?}", self.0.lock().unwrap())
        }
    }

    struct Canned(http::StatusCode, &'static str);

    impl HttpClient for Canned {
        fn execute(&self, _request: HttpRequest) -> HttpFuture<'_> {
            let mut response = http::Response::new(Bytes::from_static(self.1.as_bytes()));
            *response.status_mut() = self.0;
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Box::pin(async move { Ok(response) })
        }
    }

    async fn refresh_once(client: Canned) -> (Spans, Result<(), Error>) {
        let spans = Spans::default();
        let _guard =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
        let auth = ClientAuth::client_secret_post("my-client", ClientSecret::new(CLIENT_SECRET));
        let url = format!("https://auth.example.com:8443/oauth/token?tenant={QUERY_SECRET}");
        let source = ClientCredentials::builder(url, auth)
            .build_with(client)
            .unwrap();
        let result = TokenCache::new(source).token().await.map(drop);
        (spans, result)
    }

    #[tokio::test]
    async fn the_token_endpoint_call_has_an_http_client_span_without_secrets() {
        let body = r#"{"access_token":"the-access-token","token_type":"Bearer","expires_in":3600}"#;
        let (spans, result) = refresh_once(Canned(http::StatusCode::OK, body)).await;
        result.unwrap();
        let field = |name| spans.field("token_endpoint", name);
        assert_eq!(field("http.request.method").as_deref(), Some("POST"));
        assert_eq!(field("otel.kind").as_deref(), Some("client"));
        assert_eq!(field("server.address").as_deref(), Some("auth.example.com"));
        assert_eq!(field("server.port").as_deref(), Some("8443"));
        assert_eq!(field("url.path").as_deref(), Some("/oauth/token"));
        assert_eq!(field("http.response.status_code").as_deref(), Some("200"));
        assert_eq!(field("error.type"), None);
        assert_eq!(
            spans.field("token_refresh", "outcome").as_deref(),
            Some("ok")
        );
        assert_eq!(
            spans.field("token_refresh", "generation").as_deref(),
            Some("1")
        );
        assert_eq!(
            spans.field("token_refresh", "tier").as_deref(),
            Some("source")
        );
        let everything = spans.everything();
        for secret in [CLIENT_SECRET, ACCESS_TOKEN, QUERY_SECRET] {
            assert!(!everything.contains(secret), "{secret} in {everything}");
        }
    }

    #[tokio::test]
    async fn a_refused_call_records_its_status_and_the_refresh_its_error_kind() {
        let body = r#"{"error":"invalid_client"}"#;
        let (spans, result) = refresh_once(Canned(http::StatusCode::UNAUTHORIZED, body)).await;
        assert_eq!(result.unwrap_err().kind(), ErrorKind::Rejected);
        let field = |name| spans.field("token_endpoint", name);
        assert_eq!(field("http.response.status_code").as_deref(), Some("401"));
        assert_eq!(field("error.type").as_deref(), Some("401"));
        assert_eq!(
            spans.field("token_refresh", "outcome").as_deref(),
            Some("error")
        );
        assert_eq!(
            spans.field("token_refresh", "error.type").as_deref(),
            Some("rejected")
        );
        let everything = spans.everything();
        assert!(!everything.contains(CLIENT_SECRET) && !everything.contains(QUERY_SECRET));
    }
}
