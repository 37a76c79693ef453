//! Origin parsing and matching: an allow-list origin and a request URI, any bytes. A parsed
//! origin prints as something that parses back to itself; an allowed request is one whose
//! scheme, host and port are the origin's; a remembered approval never changes a verdict.
#![no_main]

use http::Uri;
use libfuzzer_sys::fuzz_target;
use tower_bearer::{__fuzz, Origin};

fuzz_target!(|input: (&str, &str, bool)| {
    let (origin, to, insecure) = input;
    let Ok(origin) = Origin::parse(origin) else {
        return;
    };
    assert_eq!(Origin::parse(&origin.to_string()).unwrap(), origin);
    let Ok(uri) = to.parse::<Uri>() else {
        return;
    };
    let [first, second] = __fuzz::tower_attaches(std::slice::from_ref(&origin), insecure, &uri);
    assert_eq!(first, second, "{to}");
    if first && uri.authority().is_some() {
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("wss") => 443,
            _ => 80,
        });
        let host = uri.host().unwrap_or_default();
        assert!(
            uri.scheme_str()
                .unwrap_or_default()
                .eq_ignore_ascii_case(origin.scheme())
        );
        assert!(
            host.strip_suffix('.')
                .unwrap_or(host)
                .eq_ignore_ascii_case(origin.host())
        );
        assert_eq!(port, origin.port(), "{to}");
    }
});
