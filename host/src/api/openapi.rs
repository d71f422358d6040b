//! The OpenAPI 3 description of the API, served at `/openapi.json`.

use axum::Json;
use serde_json::{Value, json};

/// `GET /openapi.json`.
pub async fn document() -> Json<Value> {
    Json(description())
}

fn error_responses() -> Value {
    json!({
        "400": {"description": "Invalid request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}}},
        "401": {"description": "Missing, invalid or expired token; WWW-Authenticate: Bearer, and error/error_description as RFC 6750 gives them", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}}},
        "403": {"description": "The token belongs to another account", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}}}
    })
}

fn operation(summary: &str, body: Option<&str>, ok: (&str, &str)) -> Value {
    let mut responses = error_responses();
    responses[ok.0] = json!({"description": ok.1});
    let mut op = json!({
        "summary": summary,
        "security": [{"oauth2": []}],
        "parameters": [{"name": "account_id", "in": "path", "required": true, "schema": {"type": "integer"}}],
        "responses": responses,
    });
    if let Some(schema) = body {
        op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    }
    op
}

fn description() -> Value {
    let ranged = |summary: &str| {
        let mut op = operation(
            summary,
            None,
            (
                "200",
                "A page. By position: Content-Range: items FIRST-LAST/TOTAL. By reference: \
                 Content-Range: items FIRSTREF:LASTREF/* and, while items follow, \
                 Next-Range: items=LASTREF:COUNT to send back as the next Range",
            ),
        );
        op["parameters"].as_array_mut().expect("array").push(json!({
            "name": "Range", "in": "header", "required": false,
            "description": "items=FIRST-LAST (positions) or items=REFERENCE:COUNT (after a reference; items=:COUNT for the first page)",
            "schema": {"type": "string", "example": "items=:100"}
        }));
        op
    };
    let mut filter_list = ranged(
        "The filter list: recipients not sent to (hard bounces, complaints, added by hand); \
         ?address= searches; the matrix parameter ;daterange=START,END keeps the entries added \
         within it",
    );
    filter_list["parameters"]
        .as_array_mut()
        .expect("array")
        .push(json!({"name": "address", "in": "query", "required": false, "schema": {"type": "string"}}));
    let dead_letters = ranged(
        "Calls that ran out of retries, oldest first: eventId, messageId, type, sequence, \
         attempts, lastStatus, lastError",
    );
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Sluice API", "version": "1", "description": "Flowmailer-compatible transactional mail API."},
        "paths": {
            "/oauth/token": {"post": {
                "summary": "Exchange API client credentials for a bearer token (RFC 6749 section 4.4); the client authenticates in the body or with HTTP Basic",
                "requestBody": {"required": true, "content": {"application/x-www-form-urlencoded": {"schema": {
                    "type": "object", "required": ["grant_type"],
                    "properties": {"client_id": {"type": "string"}, "client_secret": {"type": "string"}, "grant_type": {"type": "string", "enum": ["client_credentials"]}, "scope": {"type": "string", "enum": ["api"]}}
                }}}},
                "responses": {
                    "200": {"description": "access_token, token_type, expires_in, scope"},
                    "400": {"description": "error: invalid_request, unsupported_grant_type or invalid_scope, with error_description"},
                    "401": {"description": "error: invalid_client, with error_description and WWW-Authenticate: Basic"},
                    "403": {"description": "error: unauthorized_client: the source may not be used from this address"}
                }
            }},
            "/{account_id}/messages/submit": {"post": operation("Submit a message", Some("SubmitMessage"), ("201", "Accepted and durable; Location names the message"))},
            "/{account_id}/messages/simulate": {"post": operation("Run the flow on a message without sending it", Some("SubmitMessage"), ("200", "The resulting subject, html, text and events"))},
            "/{account_id}/messages": {"get": ranged("List messages, newest first")},
            "/{account_id}/messages/{message_id}": {"get": operation("A message with its events", None, ("200", "The message"))},
            "/{account_id}/messages/{message_id}/archive": {"get": operation("The archived message (JSON; ?format=eml for the message itself) while its retention lasts", None, ("200", "subject, html, text, attachments, onlineLink, storedOn, expiresOn"))},
            "/{account_id}/messages/{message_id}/error_archive": {"get": operation("The message as the step that held it or failed on it got it (JSON; ?format=eml for the message itself), while its submitted copy is kept", None, ("200", "flowStepId, subject, html, text, attachments, storedOn, expiresOn"))},
            "/{account_id}/messages/{message_id}/resend": {"post": operation("Send the message again as a new message made from its submitted copy, through its flow, to its recipient or recipientAddress", None, ("201", "Accepted and durable; Location names the new message"))},
            "/{account_id}/templates": {
                "get": operation("List templates", None, ("200", "The templates")),
                "post": operation("Create a template; syntax errors are refused with part and line", Some("Template"), ("201", "The new template"))
            },
            "/{account_id}/templates/{template_id}": {
                "get": operation("A template", None, ("200", "The template")),
                "put": operation("Replace a template", Some("Template"), ("200", "The template")),
                "delete": operation("Delete a template", None, ("204", "Deleted"))
            },
            "/{account_id}/templates/preview": {"post": operation("Render a stored (name) or given template with sample data through the template step; 422 names the part and line of an error", Some("TemplatePreview"), ("200", "subject, html, text"))},
            "/{account_id}/sender_identities": {
                "get": operation("List sender identities (also at /sender_domains)", None, ("200", "The identities with their DNS records")),
                "post": operation("Add a sending domain: the host makes its DKIM key and answers with the DNS records to publish", Some("SenderIdentity"), ("201", "The identity with dnsRecords"))
            },
            "/{account_id}/sender_identities/{identity_id}": {
                "get": operation("A sender identity", None, ("200", "The identity")),
                "delete": operation("Delete a sender identity", None, ("204", "Deleted"))
            },
            "/{account_id}/sender_identities/{identity_id}/validate": {"post": operation("Look the identity's records up in DNS now", None, ("200", "The identity with what DNS answered per record"))},
            "/{account_id}/filters": {
                "get": filter_list,
                "post": operation("Add a recipient to the filter list by hand", Some("FilterEntry"), ("201", "The entry"))
            },
            "/{account_id}/filters/{filter_id}": {"delete": operation("Remove a recipient from the filter list: mail to it is sent again", None, ("204", "Removed"))},
            "/{account_id}/webhooks": {
                "get": operation("List webhooks, with their secrets, queued calls and dead letters", None, ("200", "The webhooks")),
                "post": operation("Register a URL for the account's message events; the server makes the signing secret", Some("Webhook"), ("201", "The webhook with its secret"))
            },
            "/{account_id}/webhooks/{webhook_id}": {
                "get": operation("A webhook", None, ("200", "The webhook")),
                "put": operation("Replace a webhook's URL, event types and description (rotateSecret: true makes a new secret); queued calls go to the new URL", Some("Webhook"), ("200", "The webhook")),
                "delete": operation("Delete a webhook with its queued calls and dead letters", None, ("204", "Deleted"))
            },
            "/{account_id}/webhooks/{webhook_id}/dead_letters": {"get": dead_letters},
            "/{account_id}/webhooks/{webhook_id}/dead_letters/{dead_letter_id}": {"delete": operation("Discard a dead letter", None, ("204", "Discarded"))},
            "/{account_id}/webhooks/{webhook_id}/dead_letters/{dead_letter_id}/redeliver": {"post": operation("Queue a dead letter's call again with fresh retries", None, ("202", "Queued"))},
            "/{account_id}/users": {"get": operation("The account's dashboard users as AccountUser (username, roles)", None, ("200", "AccountUser list"))},
            "/{account_id}/roles": {"get": operation("The roles of an account's users (owner, admin, editor, viewer) and what each may do", None, ("200", "Role list"))},
            "/{account_id}/event_flows": {
                "get": operation("The account's webhooks as Flowmailer's event flows: description, one externalData step (urlTemplate), secret", None, ("200", "EventFlow list")),
                "post": operation("Make a webhook as an event flow with one externalData step; what Sluice cannot do (other steps, parentId, request templates) is refused by name", None, ("201", "The EventFlow with its secret"))
            },
            "/{account_id}/event_flows/{event_flow_id}": {
                "get": operation("An event flow (a webhook)", None, ("200", "EventFlow")),
                "put": operation("Replace an event flow's URL and description; its rule stays", None, ("200", "EventFlow")),
                "delete": operation("Delete an event flow (a webhook) with its queued calls and dead letters", None, ("204", "Deleted"))
            },
            "/{account_id}/event_flows/{event_flow_id}/rule": {
                "get": operation("The event type the event flow takes, as EventFlowRuleSimple (none: every event); 409 notSimple for a webhook with several", None, ("200", "EventFlowRuleSimple")),
                "put": operation("Set the event type it takes; messageFlowId, headers, dataExpressions, linkName, linkTarget are refused by name", None, ("200", "EventFlowRuleSimple"))
            },
            "/{account_id}/event_flow_rules": {"get": operation("Each event flow with its eventType condition", None, ("200", "FlowRuleItem list"))},
            "/{account_id}/event_flow_rules/hierarchy": {"get": operation("As event_flow_rules, each with no child rules", None, ("200", "FlowRuleHierarchyItem list"))},
            "/{account_id}/message_events": {"get": ranged("List the events of the account's messages, newest first")},
            "/{account_id}/recipient/{address}/messages": {"get": ranged("List the messages to a recipient, newest first")},
            "/{account_id}/sender/{address}/messages": {"get": ranged("List the messages from an envelope sender, newest first")},
            "/{account_id}/tag/{tag}/messages": {"get": ranged("List the messages with a tag, newest first")},
            "/{account_id}/sources/{source_id}/messages": {"get": ranged("List a source's messages, newest first")},
            "/{account_id}/flows/{flow_id}/messages": {"get": ranged("List a flow's messages, newest first")},
            "/{account_id}/undeliveredmessages": {"get": ranged("List the bounced and rejected messages, newest first")},
            "/{account_id}/message_hold": {"get": ranged("List the held messages, newest first")},
            "/{account_id}/message_hold/{message_id}": {"get": operation("A held message", None, ("200", "The held message; 404 when it is not held"))},
            "/{account_id}/messagestats": {"get": operation("Counts of events per interval (;daterange=FROM,TO required, ?interval=SECONDS, ;flow_ids=)", None, ("200", "DataSets: {list: [{name, samples: [{timestamp, value}]}]}"))},
            "/{account_id}/flows/{flow_id}/stats": {"get": operation("A flow's counts of events per interval (;daterange= required, ;interval=)", None, ("200", "DataSets"))},
            "/{account_id}/api_credentials": {
                "get": operation("The account's API credentials (Flowmailer's Credentials: clientId, sourceId, allowedAddresses from the source)", None, ("200", "The credentials, without secrets")),
                "post": operation("Make an API credential for a source (sourceId, optional clientId); the clientSecret is in this answer only", None, ("201", "The credential with its clientSecret"))
            },
            "/{account_id}/api_credentials/{client_id}": {
                "get": operation("An API credential", None, ("200", "The credential, without secret")),
                "delete": operation("Remove an API credential: the client gets no new token", None, ("204", "Removed"))
            },
            "/{account_id}/flows/{flow_id}/rule": {
                "get": operation("The flow's rule as Flowmailer's FlowRuleSimple (flowId, sourceId, flowSelector, sender, headers, dataExpressions with JSON pointers); 409 notSimple when the flow's rules need /flow_rules", None, ("200", "FlowRuleSimple")),
                "put": operation("Replace the flow's rule where it stands among the account's rules; without conditions, remove it", None, ("200", "FlowRuleSimple"))
            },
            "/{account_id}/sources/{source_id}/stats": {"get": operation("A source's counts of events per interval (;daterange= required, ;interval=)", None, ("200", "DataSets"))},
            "/{account_id}/sources/{source_id}/users": {
                "get": operation("A source's SMTP users", None, ("200", "id, username, protocol, sourceId")),
                "post": operation("Make an SMTP user (username and password given or made; the password is answered once)", None, ("201", "The user with its password"))
            },
            "/{account_id}/sources/{source_id}/users/{username}": {
                "get": operation("An SMTP user", None, ("200", "The user, never its password")),
                "put": operation("Replace an SMTP user's password in place (password); what GET answers is taken back unchanged", None, ("200", "The user, never its password")),
                "delete": operation("Remove an SMTP user", None, ("204", "Removed"))
            },
            "/{account_id}/sender_domains/by_domain/{domain}": {"get": operation("The sender domain of that name (?validate=true checks DNS first)", None, ("200", "The sender domain"))},
            "/{account_id}/sender_domains/validate": {"post": operation("Check the DNS records of the sender domain named senderDomain", None, ("200", "The sender domain with what DNS answered per record"))},
            "/{account_id}/sources": {
                "get": operation("List sources", None, ("200", "The sources")),
                "post": operation("Create a source", Some("Source"), ("201", "The new source"))
            },
            "/{account_id}/sources/{source_id}": {"get": operation("A source", None, ("200", "The source")), "put": operation("Change a source's settings (fields left out keep their value); its credentials stay", Some("Source"), ("200", "The source")), "delete": operation("Delete a source with its SMTP users and API clients (their tokens stop working at once); 409 stillInUse while a flow rule names it or it is the caller's own", None, ("204", "Deleted"))},
            "/{account_id}/sources/{source_id}/credentials": {"post": operation("Make an SMTP or API credential for a source; the secret is shown once", Some("NewCredential"), ("201", "kind, username, secret"))},
            "/{account_id}/flows": {
                "get": operation("List flows", None, ("200", "The flows")),
                "post": operation("Create a flow", Some("Flow"), ("201", "The new flow"))
            },
            "/{account_id}/flows/{flow_id}": {
                "get": operation("A flow", None, ("200", "The flow")),
                "put": operation("Replace a flow", Some("Flow"), ("200", "The flow")),
                "delete": operation("Delete a flow; 409 stillInUse while it is the default flow or a flow rule names it", None, ("204", "Deleted"))
            },
            "/{account_id}/flow_rules": {
                "get": operation("The flow rules and the default flow", None, ("200", "The rules")),
                "put": operation("Replace the flow rules", Some("FlowRules"), ("200", "The rules"))
            },
            "/{account_id}/plugins": {"post": {
                "summary": "Upload a Flowstep or bounce-classifier component; it is validated and refused with the reason when it does not fit",
                "security": [{"oauth2": []}],
                "requestBody": {"required": true, "content": {"application/wasm": {"schema": {"type": "string", "format": "binary"}}}},
                "responses": {"201": {"description": "sha256, imports and kind (flowstep or bounce-classifier)"}, "400": {"description": "Refused, with the reason"}}
            }},
            "/{account_id}/plugins/{plugin}": {
                "get": operation("Whether a plugin (uploaded, by sha256; the operator's, by name) runs for the account, or why it was disabled", None, ("200", "sha256, name, enabled, disabledReason")),
                "delete": operation("Remove an uploaded plugin (by sha256) from the account; refused (409 inUse) while a flow or the bounce classifier uses it", None, ("204", "Removed"))
            },
            "/{account_id}/plugins/{plugin}/enable": {
                "post": operation("Let a plugin that failed its way to disabled run again for the account, with a fresh count of failures", None, ("200", "The plugin's state"))
            },
            "/{account_id}/bounce_classifier": {
                "get": operation("The account's own bounce classifier, if installed", None, ("200", "plugin: its sha256")),
                "put": operation("Install an uploaded bounce classifier; it may replace the built-in verdict on returned mail and 5xx replies", Some("BounceClassifier"), ("200", "Installed")),
                "delete": operation("Remove it: the built-in verdicts apply again", None, ("204", "Removed"))
            }
        },
        "components": {
            "securitySchemes": {"oauth2": {"type": "oauth2", "flows": {"clientCredentials": {"tokenUrl": "/oauth/token", "scopes": {"api": "the account's API"}}}}},
            "schemas": {
                "Errors": {"type": "object", "properties": {"allErrors": {"type": "array", "items": {"type": "object", "properties": {
                    "code": {"type": "string"}, "defaultMessage": {"type": "string"}, "field": {"type": "string"},
                    "objectName": {"type": "string"}, "rejectedValue": {}
                }}}}},
                "SubmitMessage": {"type": "object", "required": ["messageType", "recipientAddress", "senderAddress"], "properties": {
                    "messageType": {"type": "string", "enum": ["EMAIL"]},
                    "recipientAddress": {"type": "string", "format": "email"},
                    "senderAddress": {"type": "string", "format": "email"},
                    "headerFromAddress": {"type": "string"}, "headerFromName": {"type": "string"},
                    "headerToAddress": {"type": "string"}, "headerToName": {"type": "string"},
                    "subject": {"type": "string"}, "html": {"type": "string"}, "text": {"type": "string"},
                    "mimedata": {"type": "string", "format": "byte", "description": "base64 RFC 5322 message"},
                    "data": {"type": "object"}, "flowSelector": {"type": "string"},
                    "headers": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "value": {"type": "string"}}}},
                    "attachments": {"type": "array", "items": {"type": "object", "properties": {
                        "content": {"type": "string", "format": "byte"}, "contentType": {"type": "string"},
                        "filename": {"type": "string"}, "disposition": {"type": "string", "enum": ["attachment", "inline"]}, "contentId": {"type": "string"}
                    }}},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "scheduleAt": {"type": "string", "format": "date-time"}
                }},
                "BounceClassifier": {"type": "object", "required": ["plugin"], "properties": {
                    "plugin": {"type": "string", "description": "sha256 of an uploaded bounce-classifier component"}
                }},
                "Source": {"type": "object", "required": ["description"], "properties": {
                    "description": {"type": "string"}, "allowedNetworks": {"type": ["array", "null"], "items": {"type": "string", "example": "192.0.2.0/24"}, "description": "Networks that may use the source: null (or left out when created) means any address, [] none. On PUT a field left out keeps its value"},
                    "maxMessageSize": {"type": "integer"}, "requireTls": {"type": "boolean"}, "allowPlainAuth": {"type": "boolean"},
                    "feedbackAddress": {"type": "string", "description": "Where spam complaints about this source's messages are forwarded"}
                }},
                "NewCredential": {"type": "object", "required": ["kind", "username"], "properties": {"kind": {"type": "string", "enum": ["smtp", "api"]}, "username": {"type": "string"}}},
                "Flow": {"type": "object", "required": ["description"], "properties": {
                    "description": {"type": "string"},
                    "expiryHours": {"type": "integer"},
                    "steps": {"type": "array", "items": {"type": "object", "description": "plugin (and config), or Flowmailer's type with its typed settings", "properties": {
                        "type": {"type": "string", "description": "template, archive, openTracking, clickTracking; plugin for a step Flowmailer has no type for"},
                        "plugin": {"type": "string", "description": "sha256 of an uploaded plugin, or an operator plugin's name"},
                        "config": {"type": "object"}, "enabledWhen": {"$ref": "#/components/schemas/Condition"},
                        "template": {"type": "object", "properties": {"id": {"type": "string"}, "description": {"type": "string"}}},
                        "archive": {"type": "object", "properties": {"retention": {"type": "string", "enum": ["P1M", "P3M", "P6M", "P1Y"]}, "onlineLink": {"type": "boolean"}}}
                    }}}
                }},
                "Webhook": {"type": "object", "required": ["url"], "properties": {
                    "url": {"type": "string", "format": "uri", "description": "http or https; receives one signed POST per event"},
                    "eventTypes": {"type": "array", "items": {"type": "string", "enum": crate::store::EventKind::ALL.map(crate::store::EventKind::as_str)}, "description": "empty or absent: every event"},
                    "description": {"type": "string"},
                    "rotateSecret": {"type": "boolean", "description": "PUT only: replace the signing secret"}
                }},
                "FilterEntry": {"type": "object", "required": ["address"], "properties": {
                    "address": {"type": "string", "format": "email", "description": "also taken as recipientAddress"}, "reason": {"type": "string"}
                }},
                "Template": {"type": "object", "description": "Flowmailer's Template (description, mimeType, data, templateEngine, decodeBase64) or Sluice's parts (name, subject, html, text); a description or name is required", "properties": {
                    "description": {"type": "string", "description": "the template's name, as steps refer to it"},
                    "mimeType": {"type": "string", "enum": ["text/html", "text/plain"], "description": "which part data is"},
                    "data": {"type": "string"}, "decodeBase64": {"type": "boolean"},
                    "templateEngine": {"type": "string", "enum": ["minijinja"], "description": "Freemarker is refused: Sluice renders with minijinja"},
                    "name": {"type": "string"}, "subject": {"type": "string"}, "html": {"type": "string"}, "text": {"type": "string"}
                }},
                "TemplatePreview": {"type": "object", "properties": {
                    "name": {"type": "string", "description": "a stored template; or give subject/html/text"},
                    "subject": {"type": "string"}, "html": {"type": "string"}, "text": {"type": "string"},
                    "data": {"type": "object"},
                    "message": {"type": "object", "properties": {"subject": {"type": "string"}, "html": {"type": "string"}, "text": {"type": "string"}}}
                }},
                "SenderIdentity": {"type": "object", "required": ["domain"], "properties": {
                    "domain": {"type": "string"}, "algorithm": {"type": "string", "enum": ["rsa-2048", "ed25519"]}
                }},
                "Condition": {"type": "object", "required": ["type"], "properties": {
                    "type": {"type": "string", "enum": ["source", "flowSelector", "sender", "header", "data"]},
                    "matchType": {"type": "string", "enum": ["equals", "contains", "exists", "pattern"]},
                    "name": {"type": "string", "description": "a header's name, or a JSON pointer into the data"},
                    "value": {"type": "string"}
                }},
                "FlowRules": {"type": "array", "description": "in order; the last rule names the default flow and has no conditions", "items": {"type": "object", "required": ["flow"], "properties": {
                    "flow": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}, "description": {"type": "string"}}},
                    "conditions": {"type": "array", "items": {"$ref": "#/components/schemas/Condition"}}
                }}}
            }
        }
    })
}
