//! `type = "ldap"` backends: one search, each entry a row whose fields
//! are the attributes `attributes` maps to account keys. Uses `ldap3`'s
//! sync `LdapConn` (a tokio runtime hidden inside it, used only here),
//! with TLS through native-tls: `ldaps://`, or `ldap://` with StartTLS;
//! certificates are always verified, against `ca_file` too when given.

use crate::config::{BackendKind, RowField};
use crate::secret;

use super::sql::scrub;

/// Searches the directory; each entry becomes one row. The error is one
/// secret-free line.
pub(crate) fn search(kind: &BackendKind) -> Result<Vec<Vec<RowField>>, String> {
    let BackendKind::Ldap {
        url,
        starttls,
        ca_file,
        bind_dn,
        secret,
        base,
        filter,
        attributes,
        timeout,
    } = kind
    else {
        unreachable!("an ldap backend");
    };
    let password = secret::resolve(secret).map_err(|e| e.to_string())?;
    let secrets: Vec<String> = password.iter().map(|p| p.to_string()).collect();
    search_with(
        url,
        *starttls,
        ca_file.as_deref(),
        bind_dn.as_deref(),
        password.as_deref().map(String::as_str),
        base,
        filter,
        attributes,
        *timeout,
    )
    .map_err(|e| scrub(&e, &secrets))
}

#[cfg(feature = "ldap")]
#[allow(clippy::too_many_arguments)]
fn search_with(
    url: &str,
    starttls: bool,
    ca_file: Option<&std::path::Path>,
    bind_dn: Option<&str>,
    password: Option<&str>,
    base: &str,
    filter: &str,
    attributes: &[(String, String)],
    timeout: std::time::Duration,
) -> Result<Vec<Vec<RowField>>, String> {
    use crate::config::Field;
    use ldap3::{LdapConn, LdapConnSettings, Scope, SearchEntry};

    let mut tls = native_tls::TlsConnector::builder();
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        let cert = native_tls::Certificate::from_pem(&pem)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
        tls.add_root_certificate(cert);
    }
    let tls = tls.build().map_err(|e| format!("TLS: {e}"))?;
    let settings = LdapConnSettings::new()
        .set_conn_timeout(timeout)
        .set_starttls(starttls)
        .set_connector(tls);
    let mut ldap = LdapConn::with_settings(settings, url).map_err(|e| e.to_string())?;
    ldap.with_timeout(timeout);
    if let Some(dn) = bind_dn {
        ldap.simple_bind(dn, password.unwrap_or(""))
            .and_then(|r| r.success())
            .map_err(|e| format!("bind as {dn}: {e}"))?;
    }
    let wanted: Vec<&str> = attributes.iter().map(|(_, a)| a.as_str()).collect();
    ldap.with_timeout(timeout);
    let (entries, _) = ldap
        .search(base, Scope::Subtree, filter, wanted)
        .and_then(|r| r.success())
        .map_err(|e| format!("search {filter} under {base}: {e}"))?;
    let _ = ldap.unbind();
    Ok(entries
        .into_iter()
        .map(|entry| {
            let entry = SearchEntry::construct(entry);
            attributes
                .iter()
                .map(|(key, attribute)| {
                    // Attribute names are case-insensitive (RFC 4512).
                    let text = entry
                        .attrs
                        .iter()
                        .find(|(a, _)| a.eq_ignore_ascii_case(attribute))
                        .map(|(_, v)| v.clone())
                        .or_else(|| {
                            entry
                                .bin_attrs
                                .iter()
                                .find(|(a, _)| a.eq_ignore_ascii_case(attribute))
                                .map(|(_, v)| {
                                    v.iter()
                                        .map(|b| String::from_utf8_lossy(b).into_owned())
                                        .collect()
                                })
                        });
                    RowField {
                        key: key.clone(),
                        origin: format!("attribute {attribute}"),
                        value: match text {
                            Some(values) if !values.is_empty() => Field::Text(values.join(",")),
                            _ => Field::Null,
                        },
                    }
                })
                .collect()
        })
        .collect())
}

#[cfg(not(feature = "ldap"))]
#[allow(clippy::too_many_arguments)]
fn search_with(
    _url: &str,
    _starttls: bool,
    _ca_file: Option<&std::path::Path>,
    _bind_dn: Option<&str>,
    _password: Option<&str>,
    _base: &str,
    _filter: &str,
    _attributes: &[(String, String)],
    _timeout: std::time::Duration,
) -> Result<Vec<Vec<RowField>>, String> {
    Err("this mailretr was built without LDAP support (cargo feature `ldap`)".into())
}
