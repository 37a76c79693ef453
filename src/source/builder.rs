//! The pair of methods every source builder with an HTTP client ends with, written once:
//! `build()` (the shared default client, feature `reqwest`) and `build_with(client)`.

/// In a builder's `impl` block: `build` and `build_with`, for a builder with a
/// `client: Option<Arc<dyn HttpClient>>` field at `self.<path>` and a
/// `fn finish(self) -> Result<Built, Error>`. The doc comment given says what `build` checks;
/// `calls` names what the client calls ("the endpoint", "GitHub").
///
/// ```text
/// build_options! {
///     /// Check the URL and build the source. Does no I/O.
///     build -> RefreshEndpoint;
///     client at client;
///     calls "the endpoint";
/// }
/// ```
macro_rules! build_options {
    (
        $(#[$build_doc:meta])*
        build -> $built:ty;
        client at $($client:ident).+;
        calls $what:literal;
    ) => {
        $(#[$build_doc])*
        ///
        #[doc = concat!("Calls ", $what, " through the HTTP client every source shares by default")]
        /// (a [`ReqwestClient`](crate::http_client::ReqwestClient));
        /// [`build_with`](Self::build_with) takes yours.
        #[cfg(feature = "reqwest")]
        #[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
        pub fn build(self) -> Result<$built, $crate::Error> {
            self.finish()
        }

        #[doc = concat!("Build as `build()` does, calling ", $what, " through `client`: your")]
        /// `reqwest::Client`, a `ClientWithMiddleware`, a tower client through
        /// [`from_service`](crate::http_client::from_service), or any
        /// [`HttpClient`](crate::http_client::HttpClient).
        pub fn build_with(
            mut self,
            client: impl $crate::http_client::HttpClient,
        ) -> Result<$built, $crate::Error> {
            self.$($client).+ = Some(std::sync::Arc::new(client));
            self.finish()
        }
    };
}

pub(crate) use build_options;
