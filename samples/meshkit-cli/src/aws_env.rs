//! The AWS settings a command needs, checked before any call, each failure said plainly
//! with how to fix it: a malformed endpoint URL, no region, no credentials.

use aws_credential_types::provider::ProvideCredentials;
use meshkit::sdk::SdkConfig;

use crate::Cli;

/// The SDK configuration from the standard chain (environment, profile, instance
/// role), with `--endpoint-url` applied, once the endpoint, region and credentials are
/// known to be usable.
pub(crate) async fn sdk(cli: &Cli) -> Result<SdkConfig, String> {
    let from_env = std::env::var("AWS_ENDPOINT_URL").ok();
    let endpoint = match (&cli.endpoint_url, &from_env) {
        (Some(url), _) => Some(("--endpoint-url", url.as_str())),
        (None, Some(url)) if !url.is_empty() => Some(("AWS_ENDPOINT_URL", url.as_str())),
        _ => None,
    };
    if let Some((source, url)) = endpoint
        && let Err(why) = check_endpoint(url)
    {
        return Err(format!(
            "{source} {url:?} is not a usable endpoint: {why} (e.g. http://127.0.0.1:5000 or https://appmesh.us-east-1.amazonaws.com)"
        ));
    }
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = &cli.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let sdk = loader.load().await;
    // Both problems at once, so a fix is not followed by the next refusal.
    let mut missing = Vec::new();
    if sdk.region().is_none() {
        missing.push(
            "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION), or `region` in the \
             profile AWS_PROFILE names"
                .to_string(),
        );
    }
    let credentials = match sdk.credentials_provider() {
        Some(provider) => provider.provide_credentials().await.is_ok(),
        None => false,
    };
    if !credentials {
        missing.push(no_credentials());
    }
    if missing.is_empty() {
        Ok(sdk)
    } else {
        Err(missing.join("; "))
    }
}

fn no_credentials() -> String {
    "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
     AWS_PROFILE for a profile in ~/.aws, or run with an instance or task role"
        .to_string()
}

/// Why `url` cannot be an endpoint, if it cannot: a scheme of http or https, a host,
/// an optional numeric port, nothing else odd.
fn check_endpoint(url: &str) -> Result<(), &'static str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("it must start with http:// or https://")?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it contains spaces or control characters");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6
                .split_once(']')
                .ok_or("an IPv6 host is missing its ']'")?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err("it has no host");
    }
    if let Some(p) = port
        && p.parse::<u16>().is_err()
    {
        return Err("its port is not a number from 0 to 65535");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        for ok in [
            "http://127.0.0.1:5000",
            "https://appmesh.us-east-1.amazonaws.com",
            "http://[::1]:4566/",
            "http://localhost",
        ] {
            assert_eq!(check_endpoint(ok), Ok(()), "{ok}");
        }
        for bad in [
            "127.0.0.1:5000",
            "ftp://x",
            "http://",
            "http://:80",
            "http://host:port",
            "http://host:99999",
            "http://a b",
            "http://[::1:80",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }
}
