//! `DELETE /flows/{id}`, `DELETE /sources/{id}` and `PUT /sources/{id}/users/{user}` as the
//! SDK sends them: what the account's routing still names is refused with 409 saying so; a
//! deleted source's SMTP users and API clients end at once, even a token already issued or an
//! SMTP session already logged in; messages accepted before go on; an SMTP user's password is
//! replaced in place, the old one ending as the new one starts.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::flowmailer_api::{VENDOR, sdk_get, sdk_post, sdk_put};
use crate::util::{Api, TestServer, email, id_of, second_account};

/// A DELETE as the SDK sends it; the status and the first error's code.
fn sdk_delete(api: &Api, path: &str) -> (StatusCode, String) {
    let response = api
        .http
        .delete(api.url(path))
        .bearer_auth(&api.token)
        .header("Accept", VENDOR)
        .send()
        .unwrap();
    let status = response.status();
    let body: Value = response.json().unwrap_or(Value::Null);
    let code = body["allErrors"][0]["code"].as_str().unwrap_or("");
    if status == StatusCode::CONFLICT {
        // A 409 says what still names it.
        let message = body["allErrors"][0]["defaultMessage"]
            .as_str()
            .unwrap_or("");
        assert!(message.contains("cannot be deleted"), "{body}");
    }
    (status, code.to_string())
}

#[test]
fn a_flow_is_deleted_once_no_rule_and_not_the_default_names_it() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let rules = sdk_get(&api, "flow_rules");
    let default_flow = rules.as_array().unwrap().last().unwrap()["flow"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        sdk_delete(&api, &format!("flows/{default_flow}")),
        (StatusCode::CONFLICT, "stillInUse".to_string())
    );

    let (status, flow) = sdk_post(&api, "flows", &json!({"description": "invoices"}));
    assert_eq!(status, StatusCode::CREATED);
    let flow_id = id_of(&flow).to_string();
    let rule = format!("flows/{flow_id}/rule");
    let (status, _) = sdk_put(
        &api,
        &rule,
        &json!({"flowId": flow_id, "flowSelector": "invoice"}),
    );
    assert_eq!(status, StatusCode::OK);
    let mut invoice = email("invoice");
    invoice["flowSelector"] = "invoice".into();
    let routed = api.submit(invoice);
    assert_eq!(
        server
            .wait_until_done(&routed)
            .flow_id
            .map(|id| id.to_string()),
        Some(flow_id.clone())
    );
    assert_eq!(
        sdk_delete(&api, &format!("flows/{flow_id}")),
        (StatusCode::CONFLICT, "stillInUse".to_string())
    );
    assert_eq!(
        sdk_get(&api, &format!("flows/{flow_id}"))["description"],
        "invoices"
    );

    // Another account's token finds no such flow of its own.
    let stranger = second_account(&server);
    assert_eq!(
        sdk_delete(&stranger, &format!("flows/{flow_id}")),
        (StatusCode::NOT_FOUND, "notFound".to_string())
    );

    // Without its rule it goes; the message it handled stays readable.
    let (status, _) = sdk_put(&api, &rule, &json!({"flowId": flow_id}));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        sdk_delete(&api, &format!("flows/{flow_id}")),
        (StatusCode::NO_CONTENT, String::new())
    );
    assert_eq!(
        api.get(&format!("flows/{flow_id}"))
            .send()
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        sdk_delete(&api, &format!("flows/{flow_id}")),
        (StatusCode::NOT_FOUND, "notFound".to_string())
    );
    let message = sdk_get(&api, &format!("messages/{routed}"));
    assert_eq!(message["flow"]["id"], flow_id.as_str());
    // New mail goes to the default flow.
    let after = api.submit(email("after"));
    assert_eq!(
        server
            .wait_until_done(&after)
            .flow_id
            .map(|id| id.to_string()),
        Some(default_flow)
    );
}

/// An SMTP dialogue logged in as `user`.
struct Smtp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Smtp {
    fn login(server: &TestServer, user: &str, password: &str) -> (Self, String) {
        let stream = TcpStream::connect(server.server.smtp_addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut smtp = Self {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        assert!(smtp.reply().starts_with("220 "));
        assert!(smtp.command("EHLO client.example").starts_with("250 "));
        let plain = STANDARD.encode(format!("\0{user}\0{password}"));
        let answer = smtp.command(&format!("AUTH PLAIN {plain}"));
        (smtp, answer)
    }

    /// The last line of one reply.
    fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            assert!(line.len() >= 4, "short reply line {line:?}");
            if line.as_bytes()[3] != b'-' {
                return line.trim_end().to_string();
            }
        }
    }

    fn command(&mut self, command: &str) -> String {
        self.writer
            .write_all(format!("{command}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }

    /// Sends one message; the reply to its end of data.
    fn send(&mut self) -> String {
        assert!(
            self.command("MAIL FROM:<app@example.com>")
                .starts_with("250 ")
        );
        assert!(
            self.command("RCPT TO:<ann@example.net>")
                .starts_with("250 ")
        );
        assert!(self.command("DATA").starts_with("354 "));
        self.command("Subject: hello\r\n\r\nHello.\r\n.")
    }
}

#[test]
fn deleting_a_source_ends_its_credentials_at_once_and_its_messages_go_on() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let (status, source) = sdk_post(
        &api,
        "sources",
        &json!({"description": "shop", "allowPlainAuth": true}),
    );
    assert_eq!(status, StatusCode::CREATED, "{source}");
    let source_id = id_of(&source).to_string();
    let (status, client) = sdk_post(
        &api,
        "api_credentials",
        &json!({"sourceId": source_id, "clientId": "shop-client"}),
    );
    assert_eq!(status, StatusCode::CREATED, "{client}");
    let shop = Api::connect(
        &server,
        api.account,
        "shop-client",
        client["clientSecret"].as_str().unwrap(),
    );
    let password = "correct horse battery";
    let (status, _) = sdk_post(
        &api,
        &format!("sources/{source_id}/users"),
        &json!({"username": "shop-smtp", "password": password, "protocol": "SMTP"}),
    );
    assert_eq!(status, StatusCode::CREATED);
    let (mut session, answer) = Smtp::login(&server, "shop-smtp", password);
    assert!(answer.starts_with("235 "), "{answer}");
    assert!(session.send().starts_with("250 "));
    let accepted = shop.submit(email("accepted before"));

    // The caller's own source is not deleted with its own token; another's token can.
    assert_eq!(
        sdk_delete(&shop, &format!("sources/{source_id}")),
        (StatusCode::CONFLICT, "stillInUse".to_string())
    );
    // Another account's token finds no such source of its own.
    assert_eq!(
        sdk_delete(&second_account(&server), &format!("sources/{source_id}")),
        (StatusCode::NOT_FOUND, "notFound".to_string())
    );
    assert_eq!(
        sdk_delete(&api, &format!("sources/{source_id}")),
        (StatusCode::NO_CONTENT, String::new())
    );

    // The token issued before stops working, and the client gets no new one.
    let refused = shop.get("messages").send().unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let token = shop
        .http
        .post(format!("{}/oauth/token", shop.base))
        .form(&[
            ("client_id", "shop-client"),
            ("client_secret", client["clientSecret"].as_str().unwrap()),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .unwrap();
    assert_eq!(token.status(), StatusCode::UNAUTHORIZED);
    // The session logged in before sends no more; a new login is refused.
    assert!(session.send().starts_with("530 "));
    let (_, answer) = Smtp::login(&server, "shop-smtp", password);
    assert!(answer.starts_with("535 "), "{answer}");
    assert_eq!(
        sdk_get(&api, "api_credentials")
            .as_array()
            .unwrap()
            .iter()
            .filter(|credential| credential["sourceId"] == source_id.as_str())
            .count(),
        0
    );
    assert_eq!(
        api.get(&format!("sources/{source_id}"))
            .send()
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );

    // What it submitted before goes on through its flow and stays readable.
    let done = server.wait_until_done(&accepted);
    assert_eq!(done.source_id.to_string(), source_id);
    let message = sdk_get(&api, &format!("messages/{accepted}"));
    assert_eq!(message["source"]["id"], source_id.as_str());
}

#[test]
fn a_source_a_flow_rule_names_is_not_deleted() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let (_, source) = sdk_post(&api, "sources", &json!({"description": "billing"}));
    let source_id = id_of(&source).to_string();
    let (_, flow) = sdk_post(&api, "flows", &json!({"description": "bills"}));
    let flow_id = id_of(&flow).to_string();
    let rule = format!("flows/{flow_id}/rule");
    let (status, _) = sdk_put(&api, &rule, &json!({"sourceId": source_id}));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        sdk_delete(&api, &format!("sources/{source_id}")),
        (StatusCode::CONFLICT, "stillInUse".to_string())
    );
    assert_eq!(
        sdk_get(&api, &format!("sources/{source_id}"))["description"],
        "billing"
    );
    sdk_put(&api, &rule, &json!({}));
    assert_eq!(
        sdk_delete(&api, &format!("sources/{source_id}")),
        (StatusCode::NO_CONTENT, String::new())
    );
}

#[test]
fn an_smtp_user_s_password_is_replaced_in_place_and_the_old_one_ends() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let old = "correct horse battery";
    let (status, made) = sdk_post(
        &api,
        "sources/1/users",
        &json!({"username": "shop-smtp", "password": old, "protocol": "SMTP"}),
    );
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let (mut session, answer) = Smtp::login(&server, "shop-smtp", old);
    assert!(answer.starts_with("235 "), "{answer}");
    assert!(session.send().starts_with("250 "));

    // What GET answers is taken back unchanged and changes nothing.
    let path = "sources/1/users/shop-smtp";
    let read = sdk_get(&api, path);
    let (status, written) = sdk_put(&api, path, &read);
    assert_eq!(status, StatusCode::OK, "{written}");
    assert_eq!(written, read);
    assert!(session.send().starts_with("250 "));

    // Refused by name: what an SMTP user of Sluice does not have, a rename, a move.
    for (body, field) in [
        (json!({"description": "shop"}), "description"),
        (
            json!({"allowedSenders": ["*@shop.example"]}),
            "allowedSenders",
        ),
        (json!({"username": "renamed"}), "username"),
        (json!({"sourceId": "2"}), "sourceId"),
        (json!({"protocol": "POP3"}), "protocol"),
    ] {
        let (status, refused) = sdk_put(&api, path, &body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(refused["allErrors"][0]["field"], field, "{refused}");
        assert_eq!(refused["allErrors"][0]["code"], "notSupported", "{refused}");
    }
    let (status, refused) = sdk_put(&api, path, &json!({"password": "short"}));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(refused["allErrors"][0]["field"], "password");

    let new = "a longer passphrase now";
    let mut change = read.clone();
    change["password"] = new.into();
    let (status, written) = sdk_put(&api, path, &change);
    assert_eq!(status, StatusCode::OK, "{written}");
    assert_eq!(written, read, "the password is never answered");
    // The session logged in with the old password sends no more; a new login needs the new.
    assert!(session.send().starts_with("530 "));
    let (_, answer) = Smtp::login(&server, "shop-smtp", old);
    assert!(answer.starts_with("535 "), "{answer}");
    let (mut session, answer) = Smtp::login(&server, "shop-smtp", new);
    assert!(answer.starts_with("235 "), "{answer}");
    assert!(session.send().starts_with("250 "));

    // Another account's token finds no such user; an unknown user is 404 too.
    let (status, _) = sdk_put(&second_account(&server), path, &change);
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = sdk_put(&api, "sources/1/users/nobody", &change);
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn an_account_s_users_and_roles_are_read_but_not_made_over_the_api() {
    let server = TestServer::start(|_| {});
    let api = Api::demo(&server);
    let made = server
        .block_on(server.store().create_user(sluice::store::NewUser {
            account_id: Some(api.account),
            email: "Editor@Shop.example".into(),
            role: sluice::store::Role::Editor,
            password_hash: None,
        }))
        .unwrap();
    let users = sdk_get(&api, "users");
    let listed: Vec<&Value> = users
        .as_array()
        .unwrap()
        .iter()
        .filter(|user| user["username"] == "editor@shop.example")
        .collect();
    assert_eq!(
        listed,
        [
            &json!({"id": made.id.to_string(), "username": "editor@shop.example",
                 "roles": ["editor"], "active": false})
        ]
    );
    // Another account's users are its own.
    let stranger = second_account(&server);
    assert!(
        !sdk_get(&stranger, "users")
            .as_array()
            .unwrap()
            .iter()
            .any(|user| user["username"] == "editor@shop.example")
    );

    let roles = sdk_get(&api, "roles");
    let names: Vec<&str> = roles
        .as_array()
        .unwrap()
        .iter()
        .map(|role| {
            assert_eq!(role["id"], role["name"]);
            assert!(role["description"].as_str().unwrap().len() > 10, "{role}");
            role["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(names, ["owner", "admin", "editor", "viewer"]);

    let (status, refused) = sdk_post(
        &api,
        "users",
        &json!({"username": "new@shop.example", "roles": ["owner"]}),
    );
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(refused["allErrors"][0]["code"], "notSupported");
    assert_eq!(sdk_get(&api, "users"), users, "nobody was added");
}
