//! Flow rules: ordered lists of conditions that sort a message into a Flow. All conditions of
//! a rule must hold; the first rule that matches wins; the default flow takes the rest.

use crate::message::Message;

pub use crate::store::model::{Condition, FlowRule, Routing};

/// What the rules look at.
#[derive(Clone, Copy, Debug)]
pub struct MessageFacts<'a> {
    /// The submitting source.
    pub source_id: u64,
    /// The flow selector, if given.
    pub flow_selector: Option<&'a str>,
    /// The envelope sender.
    pub sender: &'a str,
    /// The message content.
    pub message: &'a Message,
    /// The submitted data.
    pub data: Option<&'a serde_json::Value>,
}

impl Condition {
    /// Whether the condition holds for a message.
    pub fn holds(&self, facts: &MessageFacts<'_>) -> bool {
        match self {
            Condition::Source { source_id } => facts.source_id == *source_id,
            Condition::FlowSelector { equals } => facts.flow_selector == Some(equals.as_str()),
            Condition::Sender { pattern } => sender_matches(pattern, facts.sender),
            Condition::Header {
                name,
                equals,
                contains,
            } => facts.message.header_all(name).iter().any(|value| {
                equals
                    .as_ref()
                    .is_none_or(|wanted| value.trim().eq_ignore_ascii_case(wanted.trim()))
                    && contains
                        .as_ref()
                        .is_none_or(|part| value.to_lowercase().contains(&part.to_lowercase()))
            }),
            Condition::Data { pointer, equals } => facts
                .data
                .and_then(|data| data.pointer(pointer))
                .is_some_and(|value| value == equals),
        }
    }
}

fn sender_matches(pattern: &str, sender: &str) -> bool {
    let pattern = pattern.trim().to_ascii_lowercase();
    let sender = sender.trim().to_ascii_lowercase();
    if let Some(domain) = pattern.strip_prefix("*@") {
        return sender.rsplit_once('@').is_some_and(|(_, d)| d == domain);
    }
    if pattern.contains('@') {
        return sender == pattern;
    }
    sender
        .rsplit_once('@')
        .is_some_and(|(_, domain)| domain == pattern || domain.ends_with(&format!(".{pattern}")))
}

impl Routing {
    /// The flow for a message: the first rule whose conditions all hold, else the default.
    pub fn select(&self, facts: &MessageFacts<'_>) -> u64 {
        self.matching_rule(facts)
            .map_or(self.default_flow_id, |index| self.rules[index].flow_id)
    }

    /// The place of the first rule whose conditions all hold; none sends to the default.
    pub fn matching_rule(&self, facts: &MessageFacts<'_>) -> Option<usize> {
        self.rules.iter().position(|rule| {
            rule.conditions
                .iter()
                .all(|condition| condition.holds(facts))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Envelope;

    fn message() -> Message {
        Message::parse(
            &b"From: a@shop.example\r\nX-Mailer: Shop 2.0\r\nSubject: Invoice 12\r\n\r\nx\r\n"[..],
            Envelope {
                sender: "billing@mail.shop.example".into(),
                recipient: "r@example.net".into(),
            },
        )
        .unwrap()
    }

    fn select(routing: &Routing, selector: Option<&str>, data: Option<serde_json::Value>) -> u64 {
        let message = message();
        routing.select(&MessageFacts {
            source_id: 7,
            flow_selector: selector,
            sender: "billing@mail.shop.example",
            message: &message,
            data: data.as_ref(),
        })
    }

    fn rule(flow_id: u64, conditions: Vec<Condition>) -> FlowRule {
        FlowRule {
            flow_id,
            conditions,
        }
    }

    #[test]
    fn first_matching_rule_wins_and_all_conditions_must_hold() {
        let routing = Routing {
            rules: vec![
                rule(
                    1,
                    vec![
                        Condition::Source { source_id: 7 },
                        Condition::FlowSelector {
                            equals: "invoice".into(),
                        },
                    ],
                ),
                rule(2, vec![Condition::Source { source_id: 7 }]),
                rule(3, vec![]),
            ],
            default_flow_id: 99,
        };
        assert_eq!(select(&routing, Some("invoice"), None), 1);
        assert_eq!(select(&routing, Some("other"), None), 2);
        assert_eq!(select(&routing, None, None), 2);
    }

    #[test]
    fn default_flow_takes_the_rest() {
        let routing = Routing {
            rules: vec![rule(1, vec![Condition::Source { source_id: 8 }])],
            default_flow_id: 99,
        };
        assert_eq!(select(&routing, None, None), 99);
    }

    #[test]
    fn sender_patterns() {
        assert!(sender_matches(
            "billing@mail.shop.example",
            "Billing@mail.shop.example"
        ));
        assert!(sender_matches("*@mail.shop.example", "x@mail.shop.example"));
        assert!(!sender_matches("*@shop.example", "x@mail.shop.example"));
        assert!(sender_matches("shop.example", "x@mail.shop.example"));
        assert!(!sender_matches("hop.example", "x@mail.shop.example"));
    }

    #[test]
    fn header_and_data_conditions() {
        let routing = Routing {
            rules: vec![
                rule(
                    1,
                    vec![Condition::Data {
                        pointer: "/order/kind".into(),
                        equals: serde_json::json!("refund"),
                    }],
                ),
                rule(
                    2,
                    vec![Condition::Header {
                        name: "subject".into(),
                        equals: None,
                        contains: Some("INVOICE".into()),
                    }],
                ),
            ],
            default_flow_id: 99,
        };
        let refund = serde_json::json!({"order": {"kind": "refund"}});
        assert_eq!(select(&routing, None, Some(refund)), 1);
        let sale = serde_json::json!({"order": {"kind": "sale"}});
        assert_eq!(select(&routing, None, Some(sale)), 2);
    }
}
