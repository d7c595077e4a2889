//! RDS IAM authentication tokens: a SigV4 presigned `GET https://host:port/?Action=connect&DBUser=user`
//! for the service `rds-db`, valid 900 s, without its `https://` prefix: what `aws rds
//! generate-db-auth-token` and botocore's `generate_db_auth_token` print, parameter for parameter.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// The signing name of RDS IAM authentication.
const SERVICE: &str = "rds-db";
/// How long a token is accepted (RDS's maximum).
pub const EXPIRES: Duration = Duration::from_secs(900);

/// What SigV4 (and botocore's `percent_encode`) leave as is: `A-Z a-z 0-9 - _ . ~`.
const SIGV4_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encode (UTF-8, upper-case hex) everything but [`SIGV4_UNRESERVED`].
pub fn uri_encode(text: &str) -> String {
    utf8_percent_encode(text, SIGV4_UNRESERVED).to_string()
}

/// The token for `username` on `hostname:port`, signed at `time` with `credentials`.
///
/// Parameters come in botocore's order: `Action`, `DBUser`, then `X-Amz-Algorithm`, `-Credential`,
/// `-Date`, `-Expires`, `-SignedHeaders`, `-Security-Token` (temporary credentials) and `-Signature`.
pub fn auth_token(
    hostname: &str,
    port: u16,
    username: &str,
    region: &str,
    credentials: &Credentials,
    time: SystemTime,
) -> Result<String, String> {
    if hostname.is_empty() || hostname.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!("{hostname:?} is not a host name"));
    }
    if username.is_empty() {
        return Err("the database user name must not be empty".into());
    }
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.expires_in = Some(EXPIRES);
    settings.signature_location = SignatureLocation::QueryParams;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| format!("signing parameters: {e}"))?;
    let query = format!("Action=connect&DBUser={}", uri_encode(username));
    let url = format!("https://{hostname}:{port}/?{query}");
    let signable = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::empty())
        .map_err(|e| format!("cannot sign a request to {hostname}:{port}: {e}"))?;
    let (instructions, _) = sign(signable, &params.into())
        .map_err(|e| format!("signing failed: {e}"))?
        .into_parts();
    let mut token = format!("{hostname}:{port}/?{query}");
    let mut signature = None;
    for (name, value) in instructions.params() {
        if *name == "X-Amz-Signature" {
            signature = Some(value);
        } else {
            token.push_str(&format!("&{name}={}", uri_encode(value)));
        }
    }
    let signature = signature.ok_or("the signer returned no signature")?;
    token.push_str(&format!("&X-Amz-Signature={}", uri_encode(signature)));
    Ok(token)
}

/// The AWS configuration of the default chain (environment, profiles with SSO or `credential_process`,
/// container and instance roles), with `region` overriding the configured one.
pub async fn sdk_config(region: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    loader.load().await
}

/// What to tell a person whose credentials are missing or expired.
fn login_hint() -> String {
    let profile = std::env::var("AWS_PROFILE")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "<your profile>".into());
    format!(
        "if you sign in through IAM Identity Center (SSO), run `aws sso login --profile {profile}` \
         (and set AWS_PROFILE={profile}); otherwise check AWS_PROFILE / AWS_ACCESS_KEY_ID"
    )
}

/// Credentials from the default chain, checked to be unexpired.
pub async fn credentials(sdk: &aws_config::SdkConfig) -> Result<Credentials, String> {
    let provider = sdk
        .credentials_provider()
        .ok_or_else(|| format!("no AWS credentials are configured; {}", login_hint()))?;
    let creds = provider.provide_credentials().await.map_err(|e| {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            let next = s.to_string();
            if !text.contains(&next) {
                text.push_str(": ");
                text.push_str(&next);
            }
            source = s.source();
        }
        format!("cannot get AWS credentials ({text}); {}", login_hint())
    })?;
    if creds.expiry().is_some_and(|t| t <= SystemTime::now()) {
        return Err(format!(
            "the AWS credentials have expired; {}",
            login_hint()
        ));
    }
    Ok(creds)
}

/// The region of an RDS endpoint (`name.xxxx.us-east-1.rds.amazonaws.com`), if it is one.
pub fn region_from_hostname(hostname: &str) -> Option<String> {
    let labels: Vec<&str> = hostname.trim_end_matches('.').split('.').collect();
    let rds = labels.iter().rposition(|l| l.eq_ignore_ascii_case("rds"))?;
    let region = labels.get(rds.checked_sub(1)?)?;
    let after = labels.get(rds + 1..)?.join(".");
    let looks_like_region = region.split('-').count() >= 3
        && region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    (looks_like_region && after.starts_with("amazonaws.")).then(|| region.to_ascii_lowercase())
}

/// The region to sign for: the flag, the configured one, or the one in an RDS host name.
pub fn pick_region(
    flag: Option<&str>,
    sdk: &aws_config::SdkConfig,
    hostname: &str,
) -> Result<String, String> {
    flag.map(str::to_owned)
        .or_else(|| sdk.region().map(|r| r.as_ref().to_owned()))
        .or_else(|| region_from_hostname(hostname))
        .ok_or_else(|| {
            format!(
                "no AWS region: pass --region, set AWS_REGION, or give the RDS endpoint name \
                 ({hostname} does not name one)"
            )
        })
}

/// A token for the default chain's credentials, signed now.
pub async fn generate(
    hostname: &str,
    port: u16,
    username: &str,
    region_flag: Option<&str>,
) -> Result<String, String> {
    let sdk = sdk_config(region_flag).await;
    let region = pick_region(region_flag, &sdk, hostname)?;
    let creds = credentials(&sdk).await?;
    auth_token(hostname, port, username, &region, &creds, SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_s_own_vector() {
        // aws-sdk-rds's auth_token test: same credentials, time and request.
        let creds = Credentials::new("akid", "secret", None, None, "test");
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_724_709_600);
        let token = auth_token(
            "prod-instance.us-east-1.rds.amazonaws.com",
            3306,
            "peccy",
            "us-east-1",
            &creds,
            time,
        )
        .unwrap();
        assert_eq!(
            token,
            "prod-instance.us-east-1.rds.amazonaws.com:3306/?Action=connect&DBUser=peccy&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=akid%2F20240826%2Fus-east-1%2Frds-db%2Faws4_request&X-Amz-Date=20240826T220000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=dd0cba843009474347af724090233265628ace491ea17ce3eb3da098b983ad89"
        );
    }

    #[test]
    fn regions_from_rds_endpoints() {
        assert_eq!(
            region_from_hostname("app.c1x2y3z4.eu-west-1.rds.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_from_hostname("app.cluster-ro-abc.cn-north-1.rds.amazonaws.com.cn").as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(region_from_hostname("localhost"), None);
        assert_eq!(region_from_hostname("db.rds.example.com"), None);
    }

    #[test]
    fn encoding_is_sigv4_s() {
        assert_eq!(uri_encode("jane.doe@acme.com"), "jane.doe%40acme.com");
        assert_eq!(uri_encode("a+b/c=~_-"), "a%2Bb%2Fc%3D~_-");
        assert_eq!(uri_encode("é"), "%C3%A9");
    }
}
