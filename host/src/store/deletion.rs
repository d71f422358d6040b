//! Deleting a flow or a source, each in one transaction with the checks that keep the account
//! working: a flow its routing still names, or a source a flow rule names, stays (the answer
//! says what names it); a deleted source's credentials go with it, so its SMTP users and API
//! clients stop authenticating at once. Messages already accepted keep their ids of both and
//! go on through delivery: nothing after acceptance needs the flow or source record.

use super::kv::{ReadableTable, WriteTransaction};

use super::model::{Condition, Flow, Routing, Source};
use super::{FLOWS, ROUTING, SOURCES, Store, StoreError, decode};

/// Why a flow or source was not deleted: what still names it, for the person who asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StillNamed(pub String);

/// An account's routing as the transaction sees it.
fn routing_in(txn: &WriteTransaction, account_id: u64) -> Result<Option<Routing>, StoreError> {
    txn.open_table(ROUTING)?
        .get(account_id)?
        .map(|value| decode(&value))
        .transpose()
}

/// The 1-based numbers of the rules that hold a condition on `source_id`.
fn rules_naming_source(routing: &Routing, source_id: u64) -> Vec<usize> {
    routing
        .rules
        .iter()
        .enumerate()
        .filter(|(_, rule)| {
            rule.conditions.iter().any(|condition| {
                matches!(condition, Condition::Source { source_id: named } if *named == source_id)
            })
        })
        .map(|(index, _)| index + 1)
        .collect()
}

fn numbered(rules: &[usize]) -> String {
    rules
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Deletes an account's flow unless its routing names it (as the default flow or in a
    /// rule). `NotFound` for a flow of another account as for a missing one.
    pub async fn delete_flow(
        &self,
        account_id: u64,
        flow_id: u64,
    ) -> Result<Result<(), StillNamed>, StoreError> {
        self.write(move |txn| {
            let mut flows = txn.open_table(FLOWS)?;
            let owned = flows
                .get(flow_id)?
                .map(|value| decode::<Flow>(&value))
                .transpose()?
                .is_some_and(|flow| flow.account_id == account_id);
            if !owned {
                return Err(StoreError::NotFound(format!("flow {flow_id}")));
            }
            if let Some(routing) = routing_in(txn, account_id)? {
                if routing.default_flow_id == flow_id {
                    return Ok(Err(StillNamed(
                        "the account's default flow takes every message no rule sorts: \
                         choose another default flow first"
                            .into(),
                    )));
                }
                let naming: Vec<usize> = (1..)
                    .zip(&routing.rules)
                    .filter(|(_, rule)| rule.flow_id == flow_id)
                    .map(|(number, _)| number)
                    .collect();
                if !naming.is_empty() {
                    return Ok(Err(StillNamed(format!(
                        "flow rule {} sorts messages into this flow: change or remove it first",
                        numbered(&naming)
                    ))));
                }
            }
            flows.delete(flow_id)?;
            Ok(Ok(()))
        })
        .await
    }

    /// Deletes an account's source with every credential of it (SMTP users and API clients)
    /// unless a flow rule names it. `NotFound` for another account's source as for a missing
    /// one.
    pub async fn delete_source(
        &self,
        account_id: u64,
        source_id: u64,
    ) -> Result<Result<(), StillNamed>, StoreError> {
        self.write(move |txn| {
            let mut sources = txn.open_table(SOURCES)?;
            let owned = sources
                .get(source_id)?
                .map(|value| decode::<Source>(&value))
                .transpose()?
                .is_some_and(|source| source.account_id == account_id);
            if !owned {
                return Err(StoreError::NotFound(format!("source {source_id}")));
            }
            if let Some(routing) = routing_in(txn, account_id)? {
                let naming = rules_naming_source(&routing, source_id);
                if !naming.is_empty() {
                    return Ok(Err(StillNamed(format!(
                        "flow rule {} sorts this source's messages: change or remove it first",
                        numbered(&naming)
                    ))));
                }
            }
            super::credentials::remove_credentials_of_source(txn, source_id)?;
            sources.delete(source_id)?;
            Ok(Ok(()))
        })
        .await
    }
}
