//! The built-in flow as customers use it, for the benches that run a whole server: a stored
//! template, a validated sender identity (so the customer signs beside the platform) and the
//! flow template → tracking → archive → dkim as the demo account's default; and the ~20 KB
//! newsletter sent through it.

use sluice::dkim::KeyAlgorithm;
use sluice::server::Server;
use sluice::store::{Flowstep, IdentityValidation, Template};

/// The stored template's html layout: the message's own html inside, two more links.
const LAYOUT: &str = r#"<html><body><h1>News from the shop</h1>{{ message.html }}
<p><a href="https://shop.example/offer">Offer</a> · <a href="{{ online_link() }}">View online</a></p>
</body></html>"#;

/// Makes the built-in flow the demo account's default on a running server, with a validated
/// identity for shop.example whose key is of `algorithm` (the platform's key is what the
/// server's configuration says: RSA-2048 by default).
pub async fn make_default(server: &Server, algorithm: KeyAlgorithm) {
    make_default_steps(server, algorithm, true).await;
}

/// As [`make_default`], with or without the archive step (a message archived for a month
/// outlives a shorter message retention).
pub async fn make_default_steps(server: &Server, algorithm: KeyAlgorithm, archive: bool) {
    let store = &server.store;
    let mut identity = server
        .dkim
        .new_identity(1, "shop.example", algorithm, "bench")
        .expect("identity");
    identity.validation = Some(IdentityValidation {
        checked_at: 0,
        valid: true,
        dkim: true,
        return_path: false,
        records: Vec::new(),
    });
    store
        .create_identity(identity)
        .await
        .expect("identity stored");
    store
        .put_template(Template {
            id: 0,
            account_id: 1,
            name: "newsletter".into(),
            subject: None,
            html: Some(LAYOUT.into()),
            text: None,
            updated_at: 0,
        })
        .await
        .expect("template");
    let steps = [
        ("template", serde_json::json!({"template": "newsletter"})),
        ("tracking", serde_json::json!({})),
        ("archive", serde_json::json!({"retention": "P1M"})),
        ("dkim", serde_json::json!({})),
    ]
    .into_iter()
    .filter(|(plugin, _)| archive || *plugin != "archive")
    .map(|(plugin, config)| Flowstep {
        plugin: plugin.into(),
        config,
        enabled_when: None,
    })
    .collect();
    super::make_default_flow(server, "built-in", steps).await;
}

/// A ~20 KB newsletter from news@shop.example: an html part with 51 links and a text part,
/// words drawn from a small vocabulary by a fixed pseudo-random sequence, so it compresses
/// about as well as prose.
pub fn newsletter() -> String {
    const WORDS: [&str; 48] = [
        "winter",
        "range",
        "coats",
        "boots",
        "free",
        "returns",
        "order",
        "today",
        "delivery",
        "week",
        "colour",
        "size",
        "fabric",
        "warm",
        "light",
        "water",
        "proof",
        "collection",
        "limited",
        "offer",
        "members",
        "early",
        "access",
        "gift",
        "card",
        "store",
        "online",
        "new",
        "arrivals",
        "classic",
        "style",
        "wool",
        "cotton",
        "linen",
        "jacket",
        "scarf",
        "gloves",
        "hat",
        "sale",
        "ends",
        "sunday",
        "price",
        "match",
        "review",
        "stars",
        "customers",
        "love",
        "this",
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut word = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        WORDS[(state % WORDS.len() as u64) as usize]
    };
    let mut sentence =
        |count: usize| -> String { (0..count).map(|_| word()).collect::<Vec<_>>().join(" ") };
    let mut html = String::new();
    for link in 0..51 {
        html.push_str(&format!(
            "<p>{} <a href=\"https://shop.example/p/{link}?utm_campaign=winter\">{}</a> {}.</p>\n",
            sentence(12),
            sentence(2),
            sentence(10)
        ));
    }
    let mut text = String::new();
    while text.len() < 8_000 {
        text.push_str(&sentence(11));
        text.push_str(".\n");
    }
    format!(
        "From: Shop <news@shop.example>\r\nTo: ann@example.net\r\nSubject: Winter\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\
         --b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n--b1--\r\n"
    )
}
