//! The host's resolver against the loopback DNS server: what delivery and DKIM will see.

use std::net::IpAddr;
use std::time::Duration;

use mail_auth::hickory_resolver::proto::rr::RData;
use mail_auth::{AuthenticatedMessage, DkimResult};
use sluice::dkim::{DomainKey, KeyAlgorithm, dkim_record_value, generate, sign, signing_key};
use sluice::dns::{DnsError, MxAnswer, Resolver};

use crate::util::dns::DnsServer;
use crate::util::dns::ResolveThrough as _;

/// Runs `test` with a resolver pointed at `server`, on a runtime of its own.
fn with_resolver<T>(server: &DnsServer, test: impl AsyncFnOnce(Resolver) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let resolver = Resolver::new(&server.config()).unwrap();
        test(resolver).await
    })
}

/// A TXT value the size of a DKIM record with an RSA-2048 key: over one 255-byte string.
fn dkim_sized_value() -> String {
    let key: String = (0..380).map(|i| (b'A' + (i % 26) as u8) as char).collect();
    format!("v=DKIM1; k=rsa; p={key}")
}

#[test]
fn a_long_txt_record_is_joined_back() {
    let server = DnsServer::start();
    let value = dkim_sized_value();
    assert_eq!(value.len(), 398);
    server.set_txt("s1._domainkey.example.com", &value);
    with_resolver(&server, async |resolver| {
        assert_eq!(
            resolver.txt("s1._domainkey.example.com").await.unwrap(),
            [value.as_str()]
        );
        // It really did travel as two character-strings of one record.
        let lookup = resolver
            .message_authenticator()
            .resolver()
            .txt_lookup("s1._domainkey.example.com.")
            .await
            .unwrap();
        let RData::TXT(txt) = &lookup.answers()[0].data else {
            panic!("{:?}", lookup.answers())
        };
        let lengths: Vec<usize> = txt.txt_data.iter().map(|part| part.len()).collect();
        assert_eq!(lengths, [255, 143]);
    });
}

#[test]
fn several_txt_records_come_back_separately() {
    let server = DnsServer::start();
    server.set_txt("Example.COM.", "v=spf1 -all");
    server.add_txt("example.com", "sluice-verification=abc");
    with_resolver(&server, async |resolver| {
        let mut records = resolver.txt("EXAMPLE.com").await.unwrap();
        records.sort();
        assert_eq!(records, ["sluice-verification=abc", "v=spf1 -all"]);
    });
}

#[test]
fn an_answer_too_big_for_udp_is_fetched_over_tcp() {
    let server = DnsServer::start();
    let value = "x".repeat(3000);
    server.set_txt("big.example.com", &value);
    with_resolver(&server, async |resolver| {
        assert_eq!(
            resolver.txt("big.example.com").await.unwrap(),
            [value.as_str()]
        );
    });
    assert!(server.udp_queries() >= 1);
    assert!(server.tcp_queries() >= 1);
}

#[test]
fn a_cname_gives_its_target() {
    let server = DnsServer::start();
    server.set_cname("track.customer.example", "Links.Sluice.EXAMPLE.");
    server.set_txt("plain.customer.example", "not an alias");
    with_resolver(&server, async |resolver| {
        assert_eq!(
            resolver.cname("TRACK.customer.example").await.unwrap(),
            Some("links.sluice.example".to_string())
        );
        assert_eq!(
            resolver.cname("plain.customer.example").await.unwrap(),
            None
        );
        assert_eq!(
            resolver.cname("absent.customer.example").await.unwrap(),
            None
        );
    });
}

#[test]
fn a_txt_lookup_follows_a_delegating_cname() {
    // Customers delegate their DKIM selector to keys we publish.
    let server = DnsServer::start();
    server.set_cname(
        "s1._domainkey.customer.example",
        "s1._domainkey.sluice.example",
    );
    server.set_txt("s1._domainkey.sluice.example", "v=DKIM1; p=key");
    with_resolver(&server, async |resolver| {
        assert_eq!(
            resolver
                .txt("s1._domainkey.customer.example")
                .await
                .unwrap(),
            ["v=DKIM1; p=key"]
        );
    });
}

#[test]
fn mx_hosts_come_most_preferred_first() {
    let server = DnsServer::start();
    server.set_mx(
        "example.net",
        &[
            (30, "mx3.example.net"),
            (10, "MX1.example.net."),
            (20, "mx2.example.net"),
        ],
    );
    with_resolver(&server, async |resolver| {
        let MxAnswer::Hosts(hosts) = resolver.mx("example.net").await.unwrap() else {
            panic!("expected hosts")
        };
        let hosts: Vec<(u16, &str)> = hosts
            .iter()
            .map(|mx| (mx.preference, mx.host.as_str()))
            .collect();
        assert_eq!(
            hosts,
            [
                (10, "mx1.example.net"),
                (20, "mx2.example.net"),
                (30, "mx3.example.net")
            ]
        );
    });
}

#[test]
fn a_null_mx_and_a_missing_mx_are_told_apart() {
    let server = DnsServer::start();
    server.set_mx("nomail.example", &[(0, ".")]);
    server.set_a("addressonly.example", "192.0.2.7".parse().unwrap());
    with_resolver(&server, async |resolver| {
        assert_eq!(
            resolver.mx("nomail.example").await.unwrap(),
            MxAnswer::NullMx
        );
        assert_eq!(
            resolver.mx("addressonly.example").await.unwrap(),
            MxAnswer::NoMx
        );
        assert_eq!(
            resolver.mx("nowhere.example").await.unwrap_err(),
            DnsError::NotFound
        );
    });
}

#[test]
fn a_missing_name_or_type_is_not_found() {
    let server = DnsServer::start();
    server.set_a("host.example.org", "192.0.2.1".parse().unwrap());
    server.set_txt("s1._domainkey.example.org", "v=DKIM1; p=");
    with_resolver(&server, async |resolver| {
        // NXDOMAIN.
        assert_eq!(
            resolver.txt("absent.example.org").await.unwrap_err(),
            DnsError::NotFound
        );
        // The name exists without TXT, and a name with only names below it.
        assert_eq!(
            resolver.txt("host.example.org").await.unwrap_err(),
            DnsError::NotFound
        );
        assert_eq!(
            resolver.txt("_domainkey.example.org").await.unwrap_err(),
            DnsError::NotFound
        );
        assert_eq!(
            resolver.ips("absent.example.org").await.unwrap_err(),
            DnsError::NotFound
        );
    });
}

#[test]
fn a_broken_authority_is_a_failure() {
    let server = DnsServer::start();
    server.set_servfail("broken.example");
    with_resolver(&server, async |resolver| {
        let error = resolver.txt("broken.example").await.unwrap_err();
        assert!(matches!(error, DnsError::Failed(_)), "{error:?}");
    });
}

#[test]
fn both_address_families_are_returned() {
    let server = DnsServer::start();
    server.set_a("mx.example.net", "192.0.2.25".parse().unwrap());
    server.add_a("mx.example.net", "2001:db8::25".parse().unwrap());
    with_resolver(&server, async |resolver| {
        let ips = resolver.ips("mx.example.net").await.unwrap();
        let expected: [IpAddr; 2] = [
            "192.0.2.25".parse().unwrap(),
            "2001:db8::25".parse().unwrap(),
        ];
        assert_eq!(ips, expected);
    });
}

#[test]
fn a_changed_record_is_seen_once_its_ttl_runs_out() {
    let server = DnsServer::start();
    server.set_ttl(1);
    server.set_txt("rotating.example.com", "v=DKIM1; p=old");
    with_resolver(&server, async |resolver| {
        assert_eq!(
            resolver.txt("rotating.example.com").await.unwrap(),
            ["v=DKIM1; p=old"]
        );
        let asked = server.udp_queries();
        server.set_txt("rotating.example.com", "v=DKIM1; p=new");
        // Within the TTL the cache answers, without asking the server.
        assert_eq!(
            resolver.txt("rotating.example.com").await.unwrap(),
            ["v=DKIM1; p=old"]
        );
        assert_eq!(server.udp_queries(), asked);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(
            resolver.txt("rotating.example.com").await.unwrap(),
            ["v=DKIM1; p=new"]
        );
        // A removed name is gone too, once the TTL has run out.
        server.remove("rotating.example.com");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(
            resolver.txt("rotating.example.com").await.unwrap_err(),
            DnsError::NotFound
        );
    });
}

#[test]
fn a_new_name_is_seen_at_once() {
    let server = DnsServer::start();
    server.set_txt("s1._domainkey.example.com", "v=DKIM1; p=first");
    with_resolver(&server, async |resolver| {
        resolver.txt("s1._domainkey.example.com").await.unwrap();
        server.set_txt("s2._domainkey.example.com", "v=DKIM1; p=second");
        assert_eq!(
            resolver.txt("s2._domainkey.example.com").await.unwrap(),
            ["v=DKIM1; p=second"]
        );
    });
}

#[test]
fn mail_auth_verifies_dkim_through_the_test_server() {
    // A 2048-bit RSA key: its TXT record is over 255 bytes, as real ones are.
    let generated = generate(KeyAlgorithm::Rsa2048).unwrap();
    let record = dkim_record_value(KeyAlgorithm::Rsa2048, &generated.public_key);
    assert!(record.len() > 255, "{}", record.len());
    let key = DomainKey::new(
        "example.com",
        "s2048",
        signing_key(KeyAlgorithm::Rsa2048, &generated.private_der).unwrap(),
    );

    let message = "From: Ann <ann@example.com>\r\nTo: bob@example.net\r\nSubject: hello\r\n\
                   \r\nA signed body.\r\n";
    let signed = format!("{}{message}", sign(message.as_bytes(), &[&key]).unwrap());

    let server = DnsServer::start();
    server.set_txt("s2048._domainkey.example.com", &record);
    with_resolver(&server, async |resolver| {
        let authenticator = resolver.message_authenticator();
        assert_eq!(
            authenticator
                .txt_raw_lookup("s2048._domainkey.example.com")
                .await
                .unwrap(),
            record.as_bytes()
        );

        let parsed = AuthenticatedMessage::parse(signed.as_bytes()).unwrap();
        let results = authenticator.verify_dkim(&parsed).await;
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].result(), &DkimResult::Pass);

        // A key that does not match fails: the verdict really comes from the server's record.
        let other = generate(KeyAlgorithm::Ed25519).unwrap();
        server.set_txt(
            "s2048._domainkey.example.com",
            &dkim_record_value(KeyAlgorithm::Rsa2048, &other.public_key),
        );
        resolver.message_authenticator().resolver().clear_cache();
        let results = authenticator.verify_dkim(&parsed).await;
        assert_ne!(results[0].result(), &DkimResult::Pass);
    });
}
