//! The built-in Flowsteps end to end: template → tracking → archive → dkim through the real
//! server, with DKIM verified by mail-auth's verifier against keys served by a loopback DNS
//! server, plus templates, archive and sender identities through the API.

use mail_auth::common::verify::VerifySignature;
use mail_auth::{AuthenticatedMessage, DkimResult};
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use sluice::store::MessageStatus;

use crate::util::dns::DnsServer;
use crate::util::dns::ResolveThrough as _;
use crate::util::{Api, TestServer, event_kinds, id_of};

/// A server whose resolver asks the test DNS server.
fn server_with_dns(dns: &DnsServer) -> TestServer {
    let config = dns.config();
    TestServer::start(move |server| server.dns = config)
}

/// Adds a sender identity for `domain` through the API and publishes its records in the test
/// DNS as a customer would, without validating it; returns the identity view.
fn unvalidated_identity(api: &Api, dns: &DnsServer, domain: &str, algorithm: &str) -> Value {
    let response = api
        .post("sender_identities")
        .json(&json!({"domain": domain, "algorithm": algorithm}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let identity: Value = response.json().unwrap();
    for record in identity["dnsRecords"].as_array().unwrap() {
        let (name, value) = (
            record["name"].as_str().unwrap(),
            record["value"].as_str().unwrap(),
        );
        match record["type"].as_str().unwrap() {
            "TXT" => dns.add_txt(name, value),
            _ => dns.set_cname(name, value),
        }
    }
    identity
}

fn validate_identity(api: &Api, identity: &Value) -> reqwest::blocking::Response {
    api.post(&format!("sender_identities/{}/validate", id_of(identity)))
        .send()
        .unwrap()
}

/// Adds a sender identity for `domain` through the API, publishes its records in the test DNS
/// as a customer would, validates it; returns the identity view.
fn published_identity(api: &Api, dns: &DnsServer, domain: &str, algorithm: &str) -> Value {
    let identity = unvalidated_identity(api, dns, domain, algorithm);
    let response = validate_identity(api, &identity);
    assert_eq!(response.status(), StatusCode::OK);
    let validated: Value = response.json().unwrap();
    assert_eq!(validated["validated"], true, "{validated:#}");
    validated
}

/// Publishes the platform's own key.
pub(crate) fn publish_platform_key(server: &TestServer, dns: &DnsServer) {
    let (name, value) = server.server.dkim.platform_record();
    dns.set_txt(&name, &value);
}

/// Verifies every DKIM signature of `raw` through the test DNS server: (d=, passed) per
/// signature.
pub(crate) fn verify(dns: &DnsServer, raw: &[u8]) -> Vec<(String, bool)> {
    let resolver = sluice::dns::Resolver::new(&dns.config()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let message = AuthenticatedMessage::parse(raw).expect("a parsable message");
    runtime.block_on(async {
        let authenticator = resolver.message_authenticator();
        authenticator
            .verify_dkim(&message)
            .await
            .iter()
            .map(|output| {
                let domain = output
                    .signature()
                    .map(|signature| signature.domain().to_string())
                    .unwrap_or_default();
                (domain, output.result() == &DkimResult::Pass)
            })
            .collect()
    })
}

pub(crate) fn set_default_flow_steps(api: &Api, steps: Value) -> String {
    let response = api
        .post("flows")
        .json(&json!({"description": "built-ins", "steps": steps}))
        .send()
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{:?}",
        response.text()
    );
    let flow: Value = response.json().unwrap();
    let flow_id = id_of(&flow);
    let response = api
        .put("flow_rules")
        .json(&json!({"rules": [], "defaultFlowId": flow_id}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.text());
    flow_id.to_string()
}

fn processed_body(server: &TestServer, id: &str) -> Vec<u8> {
    let record = server.wait_until_done(id);
    assert_eq!(
        record.status,
        MessageStatus::Processed,
        "{:?}",
        record.status_reason
    );
    server.store().body(id).unwrap().unwrap()
}

pub(crate) fn no_redirects() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The first `href`/`src` value that starts with `prefix`.
pub(crate) fn url_starting(html: &str, prefix: &str) -> String {
    html.split(['"', '\''])
        .find(|part| part.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix}… in {html}"))
        .replace("&amp;", "&")
}

const LAYOUT: &str = r#"<html><body>
<h1>Hi {{ name }}</h1>
{{ message.html }}
<p><a href="https://shop.example/offer?id={{ id }}">Offer</a>
<a href="mailto:help@shop.example">Help</a>
<a href="{{ online_link() }}" data-notrack>View online</a></p>
</body></html>"#;

#[test]
fn template_tracking_archive_and_dkim_run_end_to_end() {
    let dns = DnsServer::start();
    let server = server_with_dns(&dns);
    let api = Api::demo(&server);
    publish_platform_key(&server, &dns);
    let identity = published_identity(&api, &dns, "shop.example", "ed25519");
    assert_eq!(identity["returnPathDomain"], "bounce.shop.example");

    let response = api
        .post("templates")
        .json(&json!({"name": "welcome", "subject": "Welcome {{ name }}", "html": LAYOUT}))
        .send()
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{:?}",
        response.text()
    );
    set_default_flow_steps(
        &api,
        json!([
            {"plugin": "template", "config": {"template": "welcome"}},
            {"plugin": "tracking", "config": {}},
            {"plugin": "archive", "config": {"retention": "P1M"}},
            {"plugin": "dkim"},
        ]),
    );

    let id = api.submit(json!({
        "messageType": "EMAIL",
        "senderAddress": "news@shop.example",
        "headerFromAddress": "news@shop.example",
        "recipientAddress": "ann@example.net",
        "subject": "Order 42",
        "html": "<p>Your order <b>ships</b> today.</p>",
        "data": {"name": "Ann <A&B>", "id": 42},
    }));
    let raw = processed_body(&server, &id);
    let message = sluice::message::Message::parse(raw.clone(), crate::util::envelope()).unwrap();

    // Rendered: data escaped in html, the submitted html reused as it was, a text part made.
    assert_eq!(message.header("Subject").unwrap(), "Welcome Ann <A&B>");
    let html = message.html().unwrap();
    assert!(html.contains("<h1>Hi Ann &lt;A&amp;B&gt;</h1>"), "{html}");
    assert!(
        html.contains("<p>Your order <b>ships</b> today.</p>"),
        "{html}"
    );
    let text = message.text().unwrap();
    assert!(
        text.contains("Hi Ann <A&B>") && text.contains("Your order ships today."),
        "{text}"
    );

    // Tracked: the offer link and the pixel point at the host; mailto and the online link not.
    let base = format!("http://{}", server.server.api_addr);
    let click = url_starting(&html, &format!("{base}/c/"));
    url_starting(&html, &format!("{base}/o/"));
    assert!(html.contains("href=\"mailto:help@shop.example\""), "{html}");
    assert!(!html.contains("https://shop.example/offer"), "{html}");
    let online = url_starting(&html, &format!("{base}/v/"));

    // Signed for the platform and the customer, and both verify independently.
    let mut results = verify(&dns, &raw);
    results.sort();
    assert_eq!(
        results,
        [
            ("shop.example".to_string(), true),
            ("sluice.example".to_string(), true)
        ]
    );
    let view: Value = api
        .get(&format!("messages/{id}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(view["dmarc"]["pass"], true, "{view:#}");
    assert_eq!(view["dmarc"]["dkimAligned"], true);
    assert_eq!(view["dmarc"]["spfAligned"], true);
    assert_eq!(view["dmarc"]["fromDomain"], "shop.example");
    assert_eq!(view["onlineLink"], online.as_str());

    // Archived, and readable online by whoever has the link.
    let archives: Value = api
        .get(&format!("messages/{id}/archive"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    // Flowmailer's shape: one archive per archiving step, a list.
    assert_eq!(archives.as_array().map(Vec::len), Some(1), "{archives:#}");
    let archive = &archives[0];
    assert_eq!(archive["subject"], "Welcome Ann <A&B>");
    assert!(archive["html"].as_str().unwrap().contains("ships"));
    let page = no_redirects().get(&online).send().unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(
        page.text()
            .unwrap()
            .contains("Your order <b>ships</b> today.")
    );

    // A click is recorded and goes where the message linked; a forged token goes nowhere.
    let response = no_redirects()
        .get(&click)
        .header("user-agent", "test-agent")
        .send()
        .unwrap();
    assert!(response.status().is_redirection());
    assert_eq!(
        response.headers()["location"],
        "https://shop.example/offer?id=42"
    );
    let kinds = event_kinds(&server, &id);
    assert!(kinds.contains(&"CLICKED".to_string()), "{kinds:?}");
    let mut forged = click.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        no_redirects().get(&forged).send().unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let forged_online = format!("{online}x");
    assert_eq!(
        no_redirects().get(&forged_online).send().unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // Changed after signing: both signatures fail.
    let altered = String::from_utf8(raw)
        .unwrap()
        .replacen("Your order", "Your 0rder", 1);
    let results = verify(&dns, altered.as_bytes());
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|(_, passed)| !passed), "{results:?}");
}

#[test]
fn signatures_verify_for_8bit_content_and_long_lines_with_rsa_keys() {
    let dns = DnsServer::start();
    let server = server_with_dns(&dns);
    let api = Api::demo(&server);
    publish_platform_key(&server, &dns);
    published_identity(&api, &dns, "example.org", "rsa-2048");
    set_default_flow_steps(&api, json!([{"plugin": "dkim"}]));

    let long_line = "word ".repeat(400);
    let mime = format!(
        "From: Zoë <news@mail.example.org>\r\nTo: ann@example.net\r\nSubject: Grüße\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\nDiese Nachricht enthält Umlaute: äöü ß.\r\n\
         {long_line}\r\n  trailing  spaces   \r\n\r\n\r\n"
    );
    use base64::Engine as _;
    let id = api.submit(json!({
        "messageType": "EMAIL",
        "senderAddress": "news@mail.example.org",
        "recipientAddress": "ann@example.net",
        "mimedata": base64::engine::general_purpose::STANDARD.encode(&mime),
    }));
    let raw = processed_body(&server, &id);
    assert!(
        raw.windows(2).any(|pair| pair == "ä".as_bytes()),
        "8-bit content kept"
    );
    let mut results = verify(&dns, &raw);
    results.sort();
    // The identity for example.org signs mail from its subdomain mail.example.org.
    assert_eq!(
        results,
        [
            ("example.org".to_string(), true),
            ("sluice.example".to_string(), true)
        ]
    );
    let text = String::from_utf8(raw).unwrap();
    assert!(text.contains("a=rsa-sha256") && text.contains("c=relaxed/relaxed"));
}

#[test]
fn without_an_identity_only_the_platform_signs_and_dmarc_does_not_align() {
    let dns = DnsServer::start();
    let server = server_with_dns(&dns);
    let api = Api::demo(&server);
    publish_platform_key(&server, &dns);
    set_default_flow_steps(&api, json!([{"plugin": "dkim"}]));
    let id = api.submit(json!({
        "messageType": "EMAIL",
        "senderAddress": "app@unregistered.example",
        "recipientAddress": "ann@example.net",
        "subject": "Hello",
        "text": "Hello",
    }));
    let raw = processed_body(&server, &id);
    assert_eq!(verify(&dns, &raw), [("sluice.example".to_string(), true)]);
    let view: Value = api
        .get(&format!("messages/{id}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(view["dmarc"]["pass"], false, "{view:#}");
    assert_eq!(view["dmarc"]["returnPathDomain"], "bounce.sluice.example");
}

#[test]
fn templates_are_checked_when_saved_and_previewed_through_the_step() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);

    let response = api
        .post("templates")
        .json(&json!({"name": "broken", "html": "<p>\n{% if x %}\nunclosed\n</p>"}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().unwrap();
    assert_eq!(body["allErrors"][0]["code"], "templateSyntax", "{body:#}");
    assert_eq!(body["allErrors"][0]["field"], "html");
    assert!(
        body["allErrors"][0]["rejectedValue"]["line"]
            .as_u64()
            .is_some(),
        "{body:#}"
    );

    let response = api
        .post("templates")
        .json(&json!({"name": "hello", "subject": "Hi {{ name }}", "html": "<p>Hi {{ name }}</p>\n<p>{{ coupon }}</p>"}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    let preview: Value = api
        .post("templates/preview")
        .json(&json!({"name": "hello", "data": {"name": "<Bo>", "coupon": "X1"}}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(preview["subject"], "Hi <Bo>");
    assert!(
        preview["html"]
            .as_str()
            .unwrap()
            .contains("<p>Hi &lt;Bo&gt;</p>"),
        "{preview:#}"
    );
    assert!(
        preview["text"].as_str().unwrap().contains("Hi <Bo>"),
        "{preview:#}"
    );

    // The sample message's subject is a header too: no line breaks in it.
    let response = api
        .post("templates/preview")
        .json(
            &json!({"name": "hello", "data": {"name": "Bo", "coupon": "X1"},
                      "message": {"subject": "s\r\nBcc: v@example.org"}}),
        )
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().unwrap();
    assert_eq!(body["allErrors"][0]["field"], "message.subject", "{body:#}");
    assert_eq!(body["allErrors"][0]["code"], "lineBreak", "{body:#}");

    // A missing variable names the part and the line; nothing half-rendered comes back.
    let response = api
        .post("templates/preview")
        .json(&json!({"name": "hello", "data": {"name": "Bo"}}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().unwrap();
    let message = body["allErrors"][0]["defaultMessage"].as_str().unwrap();
    assert!(message.contains("html line 2"), "{message}");

    // The same in a real flow: the message is held with the line, never sent half-rendered.
    set_default_flow_steps(
        &api,
        json!([{"plugin": "template", "config": {"template": "hello"}}]),
    );
    let id = api.submit(json!({
        "messageType": "EMAIL",
        "senderAddress": "app@example.com",
        "recipientAddress": "ann@example.net",
        "subject": "x",
        "text": "x",
        "data": {"name": "Bo"},
    }));
    let record = server.wait_until_done(&id);
    assert_eq!(record.status, MessageStatus::Held);
    assert!(record.status_reason.unwrap().contains("html line 2"));

    // Bad built-in configurations are refused when the flow is saved.
    for (plugin, config, needle) in [
        ("template", json!({"template": "nope"}), "does not exist"),
        ("template", json!({"template": "hello", "inline": {}}), ""),
        ("archive", json!({"retention": "P2Y"}), "P2Y"),
        ("tracking", json!({"clickz": true}), "clickz"),
        ("dkim", json!({"key": "mine"}), "key"),
    ] {
        let response = api
            .post("flows")
            .json(&json!({"description": "bad", "steps": [{"plugin": plugin, "config": config}]}))
            .send()
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{plugin} {config}"
        );
        let body: Value = response.json().unwrap();
        assert_eq!(body["allErrors"][0]["code"], "invalidConfig", "{body:#}");
        let message = body["allErrors"][0]["defaultMessage"].as_str().unwrap();
        assert!(message.contains(needle), "{plugin}: {message}");
    }
}

#[test]
fn archives_expire_and_their_online_links_stop_working() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    set_default_flow_steps(
        &api,
        json!([{"plugin": "archive", "config": {"retention": "P1M"}}]),
    );
    let id = api.submit(json!({
        "messageType": "EMAIL",
        "senderAddress": "app@example.com",
        "recipientAddress": "ann@example.net",
        "subject": "Kept",
        "html": "<p>kept</p>",
    }));
    processed_body(&server, &id);
    let view: Value = api
        .get(&format!("messages/{id}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let online = view["onlineLink"].as_str().unwrap().to_string();
    assert_eq!(
        Client::new().get(&online).send().unwrap().status(),
        StatusCode::OK
    );
    let eml = api
        .get(&format!("messages/{id}/archive?format=eml"))
        .send()
        .unwrap();
    assert_eq!(eml.headers()["content-type"], "message/rfc822");
    assert!(eml.text().unwrap().contains("Subject: Kept"));

    let store = server.store().clone();
    let day = 24 * 60 * 60 * 1000;
    let now = sluice::store::now_millis();
    assert_eq!(
        server
            .block_on(store.purge_archives(now + 30 * day))
            .unwrap(),
        0
    );
    assert_eq!(
        server
            .block_on(store.purge_archives(now + 32 * day))
            .unwrap(),
        1
    );
    assert_eq!(
        api.get(&format!("messages/{id}/archive"))
            .send()
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        Client::new().get(&online).send().unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

#[test]
fn sender_identities_show_their_records_and_stay_in_their_account() {
    let dns = DnsServer::start();
    let server = server_with_dns(&dns);
    let api = Api::demo(&server);
    let response = api
        .post("sender_domains")
        .json(&json!({"senderDomain": "Brand.Example."}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let identity: Value = response.json().unwrap();
    assert_eq!(identity["domain"], "brand.example");
    assert_eq!(identity["algorithm"], "rsa-2048");
    assert_eq!(identity["validated"], false);
    let records = identity["dnsRecords"].as_array().unwrap();
    let dkim = &records[0];
    let selector = identity["selector"].as_str().unwrap();
    assert_eq!(dkim["name"], format!("{selector}._domainkey.brand.example"));
    assert!(
        dkim["value"]
            .as_str()
            .unwrap()
            .starts_with("v=DKIM1; k=rsa; p=MII")
    );
    let purposes: Vec<&str> = records
        .iter()
        .map(|r| r["purpose"].as_str().unwrap())
        .collect();
    assert_eq!(
        purposes,
        ["dkim", "spf", "dmarc", "return-path", "web-domain"]
    );
    assert!(
        !identity.to_string().contains("sealed"),
        "no private key material shown"
    );

    // Nothing published yet: the check says so, record by record.
    let id = id_of(&identity);
    let checked: Value = api
        .post(&format!("sender_identities/{id}/validate"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(checked["validated"], false);
    assert!(
        checked["dnsRecords"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["ok"] == false)
    );

    // The return-path CNAME points at a name every account shares: without this identity's
    // DKIM key published, it does not make the customer's domain the envelope sender.
    dns.set_cname("bounce.brand.example", "bounce.sluice.example");
    // The first check's "no such name" is cached for the test server's one-second TTL.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let checked: Value = api
        .post(&format!("sender_identities/{id}/validate"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let return_path = checked["dnsRecords"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["purpose"] == "return-path")
        .unwrap();
    assert_eq!(return_path["ok"], true);
    assert_eq!(checked["returnPathDomain"], "bounce.sluice.example");

    let again = api
        .post("sender_identities")
        .json(&json!({"domain": "brand.example"}))
        .send()
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let bad = api
        .post("sender_identities")
        .json(&json!({"domain": "not a domain"}))
        .send()
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // Another account sees nothing of it.
    let other = crate::util::second_account(&server);
    assert_eq!(
        other
            .get(&format!("sender_identities/{id}"))
            .send()
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        other
            .get("sender_identities")
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap(),
        json!([])
    );
    let response = api
        .http
        .delete(api.url(&format!("sender_identities/{id}")))
        .bearer_auth(&api.token)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

fn signed_message(api: &Api, server: &TestServer, from: &str) -> Vec<u8> {
    let id = api.submit(json!({
        "messageType": "EMAIL",
        "senderAddress": from,
        "recipientAddress": "ann@example.net",
        "subject": "Hello",
        "text": "Hello",
    }));
    processed_body(server, &id)
}

#[test]
fn an_unvalidated_identity_does_not_sign_for_its_domain() {
    let dns = DnsServer::start();
    let server = server_with_dns(&dns);
    let api = Api::demo(&server);
    publish_platform_key(&server, &dns);
    // Its key is even in DNS, but nobody asked to validate it: only the platform signs.
    unvalidated_identity(&api, &dns, "brand.example", "ed25519");
    set_default_flow_steps(&api, json!([{"plugin": "dkim"}]));
    let raw = signed_message(&api, &server, "news@brand.example");
    assert_eq!(verify(&dns, &raw), [("sluice.example".to_string(), true)]);
    let text = String::from_utf8(raw).unwrap();
    assert!(!text.contains("d=brand.example"), "{text}");
}

#[test]
fn a_domain_validated_by_one_account_is_neither_validated_nor_signed_for_another() {
    let dns = DnsServer::start();
    let server = server_with_dns(&dns);
    let owner = Api::demo(&server);
    publish_platform_key(&server, &dns);
    let owners = published_identity(&owner, &dns, "brand.example", "ed25519");

    // Another account may register the domain, and even find its key published, but it is
    // refused at validation and never signs.
    let other = crate::util::second_account(&server);
    let others = unvalidated_identity(&other, &dns, "brand.example", "ed25519");
    let response = validate_identity(&other, &others);
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let errors: Value = response.json().unwrap();
    let message = errors["allErrors"][0]["defaultMessage"].as_str().unwrap();
    assert!(
        message.contains("brand.example") && message.contains("another account"),
        "{errors}"
    );
    let view: Value = other
        .get(&format!("sender_identities/{}", id_of(&others)))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(view["validated"], false, "{view}");
    set_default_flow_steps(&other, json!([{"plugin": "dkim"}]));
    let raw = signed_message(&other, &server, "news@brand.example");
    assert_eq!(verify(&dns, &raw), [("sluice.example".to_string(), true)]);

    // The owner still signs; once it gives the domain up, the other account may take it.
    set_default_flow_steps(&owner, json!([{"plugin": "dkim"}]));
    let raw = signed_message(&owner, &server, "news@brand.example");
    let mut results = verify(&dns, &raw);
    results.sort();
    assert_eq!(
        results,
        [
            ("brand.example".to_string(), true),
            ("sluice.example".to_string(), true)
        ]
    );
    let response = owner
        .http
        .delete(owner.url(&format!("sender_identities/{}", id_of(&owners))))
        .bearer_auth(&owner.token)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = validate_identity(&other, &others);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().unwrap()["validated"], true);
    let raw = signed_message(&other, &server, "news@brand.example");
    let mut results = verify(&dns, &raw);
    results.sort();
    assert_eq!(
        results,
        [
            ("brand.example".to_string(), true),
            ("sluice.example".to_string(), true)
        ]
    );
}

/// A Python that has dkimpy (Debian's python3-dkim), if any.
fn python_with_dkimpy() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|python| {
        std::process::Command::new(python)
            .args(["-c", "import dkim"])
            .output()
            .is_ok_and(|output| output.status.success())
    })
}

/// dkimpy's verdict on every signature of `raw`, with the TXT records given: "<d=> pass" or
/// "<d=> fail <reason>" per signature.
fn dkimpy_verdicts(python: &str, raw: &[u8], records: &[(String, String)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let message = dir.path().join("message.eml");
    std::fs::write(&message, raw).unwrap();
    let table: serde_json::Map<String, Value> = records
        .iter()
        .map(|(name, value)| (name.clone(), json!(value)))
        .collect();
    let records = dir.path().join("records.json");
    std::fs::write(&records, Value::Object(table).to_string()).unwrap();
    let output = std::process::Command::new(python)
        .arg(crate::util::data("dkimpy_verify.py"))
        .arg(&message)
        .arg(&records)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.trim().is_empty(), "dkimpy_verify.py: {stderr}");
    let mut verdicts: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    verdicts.sort();
    verdicts
}

#[test]
fn dkimpy_accepts_platform_and_customer_signatures_with_rsa_and_ed25519_keys() {
    use std::io::Write as _;
    let Some(python) = python_with_dkimpy() else {
        // Straight to the process's stderr, past the test harness's capture: a skip is seen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED dkimpy_accepts_platform_and_customer_signatures_with_rsa_and_ed25519_keys: \
             python3-dkim is not installed (apt-get install python3-dkim)"
        );
        return;
    };
    for (algorithm, name) in [
        (sluice::dkim::KeyAlgorithm::Rsa2048, "rsa-2048"),
        (sluice::dkim::KeyAlgorithm::Ed25519, "ed25519"),
    ] {
        let dns = DnsServer::start();
        let config = dns.config();
        let server = TestServer::start(move |server| {
            server.dns = config;
            server.dkim.platform_algorithm = algorithm;
        });
        let api = Api::demo(&server);
        publish_platform_key(&server, &dns);
        let identity = published_identity(&api, &dns, "shop.example", name);
        set_default_flow_steps(&api, json!([{"plugin": "dkim"}]));
        let mut records = vec![server.server.dkim.platform_record()];
        let dkim = &identity["dnsRecords"][0];
        records.push((
            dkim["name"].as_str().unwrap().to_string(),
            dkim["value"].as_str().unwrap().to_string(),
        ));
        // Several messages: where mail-auth folds the header depends on its length.
        for subject in [
            "Hi",
            "Your order 42 ships today",
            &"long subject ".repeat(12),
        ] {
            let id = api.submit(json!({
                "messageType": "EMAIL",
                "senderAddress": "news@shop.example",
                "recipientAddress": "ann@example.net",
                "subject": subject,
                "html": "<p>Grüße, <b>Zoë</b></p>",
            }));
            let raw = processed_body(&server, &id);
            assert_eq!(
                dkimpy_verdicts(python, &raw, &records),
                ["shop.example pass", "sluice.example pass"],
                "{name}: {}",
                String::from_utf8_lossy(&raw)
            );
            // mail-auth's own verifier agrees.
            let mut results = verify(&dns, &raw);
            results.sort();
            assert_eq!(
                results,
                [
                    ("shop.example".to_string(), true),
                    ("sluice.example".to_string(), true)
                ],
                "{name}"
            );
        }
    }
}

/// A newsletter with a PDF whose base64 is folded at 60 columns (a re-assembled body would
/// refold it at 76): the bytes from the attachment's boundary to the end of the message.
fn newsletter_with_folded_attachment() -> (Vec<u8>, String) {
    let pdf: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &pdf);
    let folded: Vec<&str> = encoded
        .as_bytes()
        .chunks(60)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect();
    let tail = format!(
        "--outer\r\nContent-Type: application/pdf; name=\"winter.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"winter.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--outer--\r\n",
        folded.join("\r\n")
    );
    let raw = format!(
        "From: Shop <news@shop.example>\r\nTo: ann@example.net\r\nSubject: Winter\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
         --outer\r\nContent-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n\
         --inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n\
         --inner\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         <p>See <a href=\"https://shop.example/coats\">coats</a></p>\r\n--inner--\r\n{tail}"
    );
    (raw.into_bytes(), tail)
}

#[test]
fn an_untouched_attachment_leaves_template_and_tracking_byte_for_byte() {
    use sluice::message::{Envelope, Message};
    use sluice::plugin::{PluginRuntime, RuntimeLimits, StepContext};

    let runtime = PluginRuntime::new(RuntimeLimits::default(), None).unwrap();
    let registry = sluice::plugin::registry::PluginRegistry::new();
    sluice::plugin::builtin::load_builtins(&runtime, &registry).unwrap();
    let context = StepContext {
        message_id: "m1".into(),
        account_id: 1,
        simulation: false,
        links: std::sync::Arc::new(sluice::tracking::LinkSigner::new(
            [7; 32],
            "https://t.shop.example",
        )),
        services: None,
    };
    let (raw, attachment_tail) = newsletter_with_folded_attachment();
    let envelope = Envelope {
        sender: "news@shop.example".into(),
        recipient: "ann@example.net".into(),
    };
    let mut message = Message::parse(raw, envelope.clone()).unwrap();
    // Read first, as a flow's routing and earlier steps do, so the steps start from a view
    // made before them.
    let attachment = message.attachment_content(0).unwrap();
    for (step, config) in [
        (
            "template",
            r#"{"inline": {"html": "<h1>Hi</h1>{{ message.html }}", "text": "Hi\n{{ message.text }}"}}"#,
        ),
        ("tracking", "{}"),
    ] {
        let plugin = registry.get(step).unwrap();
        message = plugin
            .run_blocking(&message, config, Some(context.clone()))
            .unwrap_or_else(|failed| panic!("{step}: {failed:?}"))
            .message;
    }

    let out = message.to_bytes();
    assert!(
        out.ends_with(attachment_tail.as_bytes()),
        "the attachment's part changed:\n{}",
        String::from_utf8_lossy(&out)
    );
    // What the steps did reads back through a fresh parse of the bytes, as delivery sends them.
    let reparsed = Message::parse(out, envelope).unwrap();
    let html = reparsed.html().unwrap();
    assert!(html.starts_with("<h1>Hi</h1>"), "{html}");
    assert!(html.contains("https://t.shop.example/c/"), "{html}");
    assert!(!html.contains("https://shop.example/coats"), "{html}");
    assert_eq!(reparsed.text().as_deref(), Some("Hi\r\nHello"));
    assert_eq!(reparsed.attachment_content(0), Some(attachment));
    assert_eq!(reparsed.html(), message.html());
    assert_eq!(reparsed.attachments(), message.attachments());
}
