//! Would DMARC (RFC 7489) pass for a message, judged by alignment alone: the From domain
//! against the domains of our DKIM signatures and against the return-path domain. Whether the
//! receiver can verify the signature (the key published) is the identity's validation, shown
//! beside it.

pub use crate::store::model::{DmarcReport, SignatureAlignment};

/// The organizational domain (RFC 7489 §3.2) by the public suffix list; the name itself when
/// the list does not know it (a test or internal domain).
pub fn organizational_domain(domain: &str) -> String {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    match psl::domain_str(&domain) {
        Some(registrable) => registrable.to_string(),
        None => domain,
    }
}

/// Relaxed alignment: the two domains share their organizational domain.
pub fn aligned(a: &str, b: &str) -> bool {
    organizational_domain(a) == organizational_domain(b)
}

/// The report for a message from `from_domain`, signed for `signed` (domain, selector) and
/// sent with an envelope sender on `return_path_domain`.
pub fn report(
    from_domain: Option<&str>,
    signed: &[(&str, &str)],
    return_path_domain: &str,
    identity_validated: bool,
) -> DmarcReport {
    let aligns = |domain: &str| from_domain.is_some_and(|from| aligned(from, domain));
    let signatures: Vec<SignatureAlignment> = signed
        .iter()
        .map(|(domain, selector)| SignatureAlignment {
            domain: domain.to_string(),
            selector: selector.to_string(),
            aligned: aligns(domain),
        })
        .collect();
    let dkim_aligned = signatures.iter().any(|signature| signature.aligned);
    let spf_aligned = aligns(return_path_domain);
    DmarcReport {
        from_domain: from_domain.map(str::to_ascii_lowercase),
        signatures,
        dkim_aligned,
        return_path_domain: return_path_domain.to_string(),
        spf_aligned,
        pass: dkim_aligned || spf_aligned,
        identity_validated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organizational_domains_follow_the_public_suffix_list() {
        assert_eq!(organizational_domain("mail.example.com"), "example.com");
        assert_eq!(organizational_domain("a.b.example.co.uk"), "example.co.uk");
        assert_eq!(organizational_domain("Example.COM."), "example.com");
        assert!(aligned("example.com", "em.example.com"));
        assert!(!aligned("example.com", "example.net"));
        assert!(!aligned("foo.co.uk", "bar.co.uk"));
    }

    #[test]
    fn dmarc_passes_when_either_identifier_aligns() {
        let platform_only = report(
            Some("shop.example.com"),
            &[("sluice.example.net", "s1")],
            "bounce.sluice.example.net",
            false,
        );
        assert!(!platform_only.dkim_aligned);
        assert!(!platform_only.spf_aligned);
        assert!(!platform_only.pass);

        let with_identity = report(
            Some("shop.example.com"),
            &[("sluice.example.net", "s1"), ("example.com", "sl1")],
            "bounce.sluice.example.net",
            true,
        );
        assert!(with_identity.dkim_aligned);
        assert!(with_identity.pass);
        assert_eq!(
            with_identity
                .signatures
                .iter()
                .map(|s| s.aligned)
                .collect::<Vec<_>>(),
            [false, true]
        );

        let spf_only = report(Some("example.com"), &[], "rp.example.com", false);
        assert!(spf_only.spf_aligned && spf_only.pass && !spf_only.dkim_aligned);

        let no_from = report(None, &[("example.com", "s")], "example.com", false);
        assert!(!no_from.pass);
    }
}
