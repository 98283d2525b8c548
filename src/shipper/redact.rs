//! URLs as sidelog shows them (in logs, errors, `/status` and `sidelog check`): without the
//! credentials they may carry. A proxy or an intake URL can hold a user and password
//! (`https://user:pass@proxy:3128`) or a key in its query (`?dd-api-key=...`); what sidelog
//! prints must not, since logs and status pages travel further than the Secret does.

use reqwest::Url;

/// What stands for a credential that was there.
pub const HIDDEN: &str = "***";

/// Query parameters whose value is a credential (compared without case, as substrings).
const SECRET_PARAMS: &[&str] = &[
    "key", "token", "secret", "password", "passwd", "sig", "auth",
];

/// `url` with its user, password and credential-like query values replaced by [`HIDDEN`].
pub fn url(url: &Url) -> String {
    hidden(url).map_or_else(|| url.to_string(), |u| u.to_string())
}

/// The same, for a URL held as text; text that is not a URL but has a user part
/// (`scheme://user:pass@...`) keeps only what follows it.
pub fn url_text(text: &str) -> String {
    match Url::parse(text) {
        Ok(u) => url(&u),
        Err(_) => match (text.find("://"), text.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                format!("{}{HIDDEN}@{}", &text[..scheme_end + 3], &text[at + 1..])
            }
            _ => text.to_string(),
        },
    }
}

/// A copy of `url` with its credentials hidden; `None` when it has none.
pub fn hidden(url: &Url) -> Option<Url> {
    let secret_query = url.query_pairs().any(|(k, _)| is_secret_param(&k));
    if url.username().is_empty() && url.password().is_none() && !secret_query {
        return None;
    }
    let mut out = url.clone();
    if !url.username().is_empty() {
        let _ = out.set_username(HIDDEN);
    }
    if url.password().is_some() {
        let _ = out.set_password(Some(HIDDEN));
    }
    if secret_query {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_param(&k) {
                    HIDDEN.to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        out.query_pairs_mut().clear().extend_pairs(pairs);
    }
    Some(out)
}

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|p| name.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_passwords_and_keys_in_queries_are_hidden() {
        for (given, shown) in [
            (
                "http://alice:s3cret@proxy.internal:3128/",
                "http://***:***@proxy.internal:3128/",
            ),
            (
                "https://tok3n@intake.example/",
                "https://***@intake.example/",
            ),
            (
                "https://intake.example/api/v2/logs?dd-api-key=abc&ddsource=x",
                "https://intake.example/api/v2/logs?dd-api-key=***&ddsource=x",
            ),
            (
                "https://http-intake.logs.datadoghq.com/api/v2/logs",
                "https://http-intake.logs.datadoghq.com/api/v2/logs",
            ),
        ] {
            assert_eq!(url_text(given), shown, "{given}");
            assert!(!url_text(given).contains("s3cret") && !url_text(given).contains("abc"));
        }
        assert_eq!(
            url_text("socks5h://u:p@[not a url"),
            "socks5h://***@[not a url"
        );
        assert_eq!(url_text("no url here"), "no url here");
    }
}
