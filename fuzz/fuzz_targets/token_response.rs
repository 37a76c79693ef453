//! A token endpoint's 2xx answer: any content type and body, in both field spellings, with and
//! without a required expiry. A token that comes out is one the cache can send.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_bearer::__fuzz;
use tower_bearer::source::TokenFields;

fuzz_target!(|input: (u8, Option<&str>, &[u8])| {
    let (flags, content_type, body) = input;
    let fields = if flags & 1 == 0 {
        TokenFields::oauth2()
    } else {
        TokenFields::camel_case()
    };
    if let Ok(answer) = __fuzz::token_response(content_type, body, &fields, flags & 2 != 0)
        && let Ok(token) = answer.token
    {
        assert!(__fuzz::header_value(token.secret()).is_ok());
    }
    let _ = __fuzz::oauth_error_code(body);
});
