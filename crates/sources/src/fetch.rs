//! Fetching a city's calendar: HTTP(S) only, through `reqwest` (rustls),
//! bounded and polite.
//!
//! - Conditional requests (`If-None-Match`, `If-Modified-Since`).
//! - Connect and total timeouts; the total covers every redirect and the
//!   whole body, so a server that trickles bytes is cut off.
//! - Redirects followed here, at most `max_redirects`, so every hop is
//!   checked like the first.
//! - The body limit is enforced while reading, on decoded bytes: a gzip
//!   bomb stops at the limit.
//! - Unless private networks are allowed, names are resolved by
//!   [`PublicResolver`], which hands the connector only public addresses
//!   (so the address checked is the address connected to), and URLs
//!   naming an address are checked before any request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{
    ETAG, HeaderMap, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, LOCATION, RETRY_AFTER,
};
use url::Url;

use crate::address::is_public;
use crate::settings::SourceSettings;

/// The validators of the last answer, sent back as a conditional request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    /// `ETag`, sent as `If-None-Match`.
    pub etag: Option<String>,
    /// `Last-Modified`, sent as `If-Modified-Since`.
    pub last_modified: Option<String>,
}

/// What a fetch brought.
#[derive(Debug)]
pub enum Fetched {
    /// `304 Not Modified`: nothing to read.
    NotModified,
    /// A body, with the answer's validators.
    Body {
        /// The body, decoded.
        body: Vec<u8>,
        /// Validators for the next fetch.
        validators: Validators,
        /// The answer's `Content-Type`.
        content_type: Option<String>,
        /// The URL the body came from, after redirects.
        url: Url,
    },
}

/// Why a fetch failed; its message is what `Source.lastError` says.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not an http(s) URL.
    #[error("only http and https URLs are fetched (got '{0}')")]
    Scheme(String),
    /// The host resolves only to addresses of the hub's own network.
    #[error(
        "{0} resolves to a loopback, private, link-local or metadata address; the hub does not fetch from such addresses"
    )]
    Refused(String),
    /// A redirect loop, or just too many.
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    /// A redirect that names no valid place.
    #[error("a redirect ({0}) without a valid Location")]
    BadRedirect(u16),
    /// An answer other than 2xx, 304 or a redirect.
    #[error("the server answered HTTP {status}")]
    Status {
        /// The status code.
        status: u16,
        /// What `Retry-After` asked for.
        retry_after: Option<Duration>,
    },
    /// The body is over the limit.
    #[error("the body is larger than {0} bytes (sources.max_body_bytes)")]
    TooLarge(usize),
    /// The whole fetch took too long.
    #[error("the fetch took longer than {0} s (sources.total_timeout_secs)")]
    Timeout(u64),
    /// Connecting or reading failed.
    #[error("the request failed: {0}")]
    Transport(String),
}

impl FetchError {
    /// How long the server asked us to wait before the next try.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FetchError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The resolver used while private networks are refused: it resolves a
/// name and keeps only public addresses; a name with none is refused.
#[derive(Debug, Default)]
pub struct PublicResolver;

/// A name that resolves only to refused addresses.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves only to refused addresses")]
struct RefusedName(String);

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            type BoxError = Box<dyn std::error::Error + Send + Sync>;
            let resolved = match tokio::net::lookup_host((host.as_str(), 0)).await {
                Ok(resolved) => resolved,
                Err(e) => return Err::<reqwest::dns::Addrs, BoxError>(Box::new(e)),
            };
            let found: Vec<SocketAddr> = resolved.filter(|addr| is_public(addr.ip())).collect();
            if found.is_empty() {
                return Err(Box::new(RefusedName(host)));
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Fetches calendars with the limits of `[sources]`.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    allow_private: bool,
    max_redirects: usize,
    max_body_bytes: usize,
    total_timeout: Duration,
}

impl Fetcher {
    /// A fetcher with these settings.
    pub fn new(settings: &SourceSettings) -> Result<Self, FetchError> {
        let total_timeout = Duration::from_secs(settings.total_timeout_secs);
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment would resolve and connect
            // where no check of ours applies.
            .no_proxy()
            .connect_timeout(Duration::from_secs(settings.connect_timeout_secs))
            .timeout(total_timeout)
            .user_agent(settings.user_agent.clone())
            .gzip(true)
            .https_only(false);
        if !settings.allow_private_networks {
            builder = builder.dns_resolver(Arc::new(PublicResolver));
        }
        let client = builder
            .build()
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        Ok(Self {
            client,
            allow_private: settings.allow_private_networks,
            max_redirects: settings.max_redirects,
            max_body_bytes: settings.max_body_bytes,
            total_timeout,
        })
    }

    /// Fetches `url`, conditionally on `validators`, within the total
    /// timeout.
    pub async fn fetch(&self, url: &str, validators: &Validators) -> Result<Fetched, FetchError> {
        match tokio::time::timeout(self.total_timeout, self.fetch_inner(url, validators)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout(self.total_timeout.as_secs())),
        }
    }

    fn check_url(&self, url: &Url) -> Result<(), FetchError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::Scheme(url.scheme().to_owned()));
        }
        if self.allow_private {
            return Ok(());
        }
        let literal = match url.host() {
            Some(url::Host::Ipv4(v4)) => Some(std::net::IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(std::net::IpAddr::V6(v6)),
            Some(url::Host::Domain(_)) => None,
            None => return Err(FetchError::Scheme(url.scheme().to_owned())),
        };
        if let Some(ip) = literal
            && !is_public(ip)
        {
            return Err(FetchError::Refused(ip.to_string()));
        }
        Ok(())
    }

    async fn fetch_inner(&self, url: &str, validators: &Validators) -> Result<Fetched, FetchError> {
        let mut url =
            Url::parse(url).map_err(|e| FetchError::Transport(format!("invalid URL: {e}")))?;
        let mut hops = 0;
        loop {
            self.check_url(&url)?;
            let mut request = self.client.get(url.clone()).header(
                reqwest::header::ACCEPT,
                "text/calendar, application/ld+json, text/html;q=0.9, */*;q=0.5",
            );
            if let Some(etag) = &validators.etag {
                request = request.header(IF_NONE_MATCH, etag);
            }
            if let Some(modified) = &validators.last_modified {
                request = request.header(IF_MODIFIED_SINCE, modified);
            }
            let mut response = request.send().await.map_err(|e| self.transport(&url, &e))?;
            let status = response.status();
            if status.is_redirection() && status != reqwest::StatusCode::NOT_MODIFIED {
                hops += 1;
                if hops > self.max_redirects {
                    return Err(FetchError::TooManyRedirects(self.max_redirects));
                }
                let next = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|location| url.join(location).ok())
                    .ok_or(FetchError::BadRedirect(status.as_u16()))?;
                url = next;
                continue;
            }
            if status == reqwest::StatusCode::NOT_MODIFIED {
                return Ok(Fetched::NotModified);
            }
            if !status.is_success() {
                return Err(FetchError::Status {
                    status: status.as_u16(),
                    retry_after: retry_after(response.headers()),
                });
            }
            if response
                .content_length()
                .is_some_and(|n| n > self.max_body_bytes as u64)
            {
                return Err(FetchError::TooLarge(self.max_body_bytes));
            }
            let header = |name| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                    .map(str::to_owned)
            };
            let validators = Validators {
                etag: header(ETAG),
                last_modified: header(LAST_MODIFIED),
            };
            let content_type = header(reqwest::header::CONTENT_TYPE);
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| self.transport(&url, &e))?
            {
                if body.len() + chunk.len() > self.max_body_bytes {
                    return Err(FetchError::TooLarge(self.max_body_bytes));
                }
                body.extend_from_slice(&chunk);
            }
            return Ok(Fetched::Body {
                body,
                validators,
                content_type,
                url,
            });
        }
    }

    /// Names a transport failure: a refused name, a timeout, or the
    /// client's own words with their causes.
    fn transport(&self, url: &Url, err: &reqwest::Error) -> FetchError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = source {
            if e.downcast_ref::<RefusedName>().is_some() {
                return FetchError::Refused(url.host_str().unwrap_or_default().to_owned());
            }
            source = e.source();
        }
        if err.is_timeout() {
            return FetchError::Timeout(self.total_timeout.as_secs());
        }
        let mut message = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(e) = source {
            message = format!("{message}: {e}");
            source = e.source();
        }
        FetchError::Transport(message)
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    wait.to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "120".parse().expect("header"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2099 07:28:00 GMT".parse().expect("header"),
        );
        assert!(retry_after(&headers).is_some_and(|d| d > Duration::from_secs(3600)));
        headers.insert(RETRY_AFTER, "soon".parse().expect("header"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn private_literals_are_refused_before_any_request() {
        let fetcher = Fetcher::new(&SourceSettings::default()).expect("fetcher");
        for url in [
            "http://127.0.0.1/cal.ics",
            "http://[::1]/cal.ics",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.1/",
        ] {
            let parsed = Url::parse(url).expect("url");
            assert!(
                matches!(fetcher.check_url(&parsed), Err(FetchError::Refused(_))),
                "{url}"
            );
        }
        let ftp = Url::parse("ftp://example.org/cal.ics").expect("url");
        assert!(matches!(
            fetcher.check_url(&ftp),
            Err(FetchError::Scheme(_))
        ));
    }
}
