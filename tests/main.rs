//! End-to-end tests of Sluice, one binary with a module per topic.

mod api;
mod arrivals;
mod browser;
mod builtins;
mod cli;
mod connections;
mod containment;
mod contract;
mod crash;
mod delivery;
mod delivery_client;
mod dns;
mod fairness;
mod first_run;
mod flowmailer_api;
mod hot_reload;
mod languages;
mod loading;
mod pipeline;
mod returned;
mod sink;
mod smtp;
mod smtp_protocol;
mod tracking;
mod util;
mod webhooks;
