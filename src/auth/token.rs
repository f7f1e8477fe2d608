//! Where a request carries its token: `Authorization: Bearer`, `?access_token=`, or a
//! configured cookie — in that order.

use http::HeaderMap;

/// Longest token accepted (anything longer is refused unread).
pub const MAX_TOKEN: usize = 8 * 1024;

/// The request's token, if it carries one.
pub fn extract(
    headers: &HeaderMap,
    query: &str,
    query_token: bool,
    cookie: Option<&str>,
) -> Option<String> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?.trim();
        let (scheme, token) = v.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        return usable(token.trim());
    }
    if query_token {
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            if k == "access_token" {
                return usable(&v);
            }
        }
    }
    let name = cookie?;
    for h in headers.get_all(http::header::COOKIE) {
        let Ok(h) = h.to_str() else { continue };
        for pair in h.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                if k == name {
                    return usable(v.trim().trim_matches('"'));
                }
            }
        }
    }
    None
}

fn usable(t: &str) -> Option<String> {
    (!t.is_empty() && t.len() <= MAX_TOKEN).then(|| t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn header_then_query_then_cookie() {
        let all = h(&[("authorization", "Bearer aaa"), ("cookie", "s=ccc")]);
        assert_eq!(
            extract(&all, "access_token=bbb", true, Some("s")).as_deref(),
            Some("aaa")
        );
        let no_header = h(&[("cookie", "x=1; s=ccc")]);
        assert_eq!(
            extract(&no_header, "access_token=bbb", true, Some("s")).as_deref(),
            Some("bbb")
        );
        assert_eq!(
            extract(&no_header, "access_token=bbb", false, Some("s")).as_deref(),
            Some("ccc")
        );
        assert_eq!(extract(&no_header, "", true, None), None);
        assert_eq!(
            extract(&h(&[("authorization", "Basic abc")]), "", true, None),
            None
        );
        assert_eq!(
            extract(&h(&[("authorization", "bearer  t ")]), "", true, None).as_deref(),
            Some("t")
        );
        assert_eq!(
            extract(&HeaderMap::new(), "access_token=", true, None),
            None
        );
        let long = "a".repeat(MAX_TOKEN + 1);
        assert_eq!(
            extract(
                &HeaderMap::new(),
                &format!("access_token={long}"),
                true,
                None
            ),
            None
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn extraction_never_panics(auth in "[ -~]{0,80}", cookie in "[ -~]{0,80}", q in ".{0,200}") {
            let mut m = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&auth) { m.insert("authorization", v); }
            if let Ok(v) = HeaderValue::from_str(&cookie) { m.insert("cookie", v); }
            let _ = extract(&m, &q, true, Some("s"));
            m.remove("authorization");
            let _ = extract(&m, &q, true, Some("s"));
        }
    }
}
