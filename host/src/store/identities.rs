//! Sender identities and templates: the account's own records the built-in steps use.

use super::kv::{ReadableTable, TableDefinition};

use super::model::{SenderIdentity, Template};
use super::{Store, StoreError, decode, encode, next_id};

pub(super) const IDENTITIES: TableDefinition<u64, &[u8]> = TableDefinition::copied("identities");
/// (account, domain) → identity id: one identity per domain and account.
pub(super) const IDENTITY_DOMAINS: TableDefinition<(u64, &str), u64> =
    TableDefinition::copied("identity_domains");
/// domain → the identity whose validated DKIM key signs for it: a domain signs for one account
/// only, the first whose key was found in its DNS.
pub(super) const DOMAIN_SIGNERS: TableDefinition<&str, u64> =
    TableDefinition::copied("domain_signers");
pub(super) const TEMPLATES: TableDefinition<u64, &[u8]> = TableDefinition::new("templates");
/// (account, name) → template id.
pub(super) const TEMPLATE_NAMES: TableDefinition<(u64, &str), u64> =
    TableDefinition::new("template_names");

/// Gives each domain without a signer to the first identity whose DKIM key was validated for
/// it: records from before domains had one signer, or a signer deleted meanwhile.
pub(super) fn assign_domain_signers(txn: &super::kv::WriteTransaction) -> Result<(), StoreError> {
    let identities = txn.open_table(IDENTITIES)?;
    let mut signers = txn.open_table(DOMAIN_SIGNERS)?;
    for entry in identities.iter()? {
        let (id, value) = entry?;
        let identity: SenderIdentity = decode(&value)?;
        let validated = identity
            .validation
            .as_ref()
            .is_some_and(|validation| validation.dkim);
        if validated && signers.get(identity.domain.as_str())?.is_none() {
            signers.insert(identity.domain.as_str(), id)?;
        }
    }
    Ok(())
}

impl Store {
    /// Adds a sender identity; its id is assigned here. A second identity for the same domain
    /// in the account is a conflict.
    pub async fn create_identity(
        &self,
        identity: SenderIdentity,
    ) -> Result<SenderIdentity, StoreError> {
        self.check_room(identity.account_id, super::Kept::Identities)?;
        self.write(move |txn| {
            let mut identity = identity.clone();
            let mut domains = txn.open_table(IDENTITY_DOMAINS)?;
            let key = (identity.account_id, identity.domain.as_str());
            if domains.get(key)?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "sender identity for {}",
                    identity.domain
                )));
            }
            identity.id = next_id(txn, "identity")?;
            domains.insert(key, identity.id)?;
            txn.open_table(IDENTITIES)?
                .insert(identity.id, encode(&identity)?.as_slice())?;
            Ok(identity)
        })
        .await
    }

    /// A sender identity by id.
    pub fn identity(&self, id: u64) -> Result<Option<SenderIdentity>, StoreError> {
        self.get(IDENTITIES, id)
    }

    /// The account's identity for a domain.
    pub fn identity_for_domain(
        &self,
        account_id: u64,
        domain: &str,
    ) -> Result<Option<SenderIdentity>, StoreError> {
        // Two reads on their own (most domains have no identity: one statement answers):
        // an identity changed in between is read as it is after the change.
        let Some(id) = self.db.get_one(IDENTITY_DOMAINS, (account_id, domain))? else {
            return Ok(None);
        };
        self.db
            .get_one(IDENTITIES, id)?
            .map(|value| decode(&value))
            .transpose()
    }

    /// The sender identities of an account.
    pub fn identities_of(&self, account_id: u64) -> Result<Vec<SenderIdentity>, StoreError> {
        self.all_of(IDENTITIES, |identity: &SenderIdentity| {
            identity.account_id == account_id
        })
    }

    /// The account's identity that signs mail from `domain`: one whose DKIM key was validated
    /// and that holds the domain (no other account's identity validated it first).
    pub fn signing_identity(
        &self,
        account_id: u64,
        domain: &str,
    ) -> Result<Option<SenderIdentity>, StoreError> {
        // Every message signed reads it: from this node's copy (see `configuration`).
        let copied = self.copied_signer(account_id, domain, || {
            self.read_signing_identity(account_id, domain)
        })?;
        Ok(copied.map(|identity| SenderIdentity::clone(&identity)))
    }

    /// [`Store::signing_identity`] as the store holds it now.
    fn read_signing_identity(
        &self,
        account_id: u64,
        domain: &str,
    ) -> Result<Option<SenderIdentity>, StoreError> {
        // As in identity_for_domain, the domain's identity first, on its own; then whether it
        // signs for the domain and what it is, from one snapshot.
        let Some(id) = self.db.get_one(IDENTITY_DOMAINS, (account_id, domain))? else {
            return Ok(None);
        };
        let (signer, identity) = self
            .db
            .get_together(((DOMAIN_SIGNERS, domain), (IDENTITIES, id)))?;
        if signer != Some(id) {
            return Ok(None);
        }
        let identity: Option<SenderIdentity> = identity.map(|value| decode(&value)).transpose()?;
        Ok(identity.filter(|identity| {
            identity
                .validation
                .as_ref()
                .is_some_and(|validation| validation.dkim)
        }))
    }

    /// Records an identity's validation. A DKIM key found in DNS makes the identity its
    /// domain's signer, unless another account's identity already is: then nothing is recorded
    /// and the answer is [`StoreError::Conflict`]. A key no longer found gives the domain up.
    pub async fn update_identity(&self, identity: SenderIdentity) -> Result<(), StoreError> {
        self.write(move |txn| {
            let mut table = txn.open_table(IDENTITIES)?;
            if table.get(identity.id)?.is_none() {
                return Err(StoreError::NotFound(format!("identity {}", identity.id)));
            }
            let mut signers = txn.open_table(DOMAIN_SIGNERS)?;
            let domain = identity.domain.as_str();
            let holder = signers.get(domain)?;
            let validated = identity
                .validation
                .as_ref()
                .is_some_and(|validation| validation.dkim);
            match holder {
                Some(holder) if holder != identity.id => {
                    if validated && table.get(holder)?.is_some() {
                        return Err(StoreError::Conflict(format!(
                            "{domain} is already validated by another account"
                        )));
                    }
                    if validated {
                        signers.insert(domain, identity.id)?;
                    }
                }
                Some(_) if !validated => {
                    signers.delete(domain)?;
                }
                None if validated => {
                    signers.insert(domain, identity.id)?;
                }
                _ => {}
            }
            table.insert(identity.id, encode(&identity)?.as_slice())?;
            Ok(())
        })
        .await
    }

    /// Deletes an identity: mail from its domain is signed by the platform key alone after.
    pub async fn delete_identity(&self, identity: SenderIdentity) -> Result<(), StoreError> {
        self.write(move |txn| {
            txn.open_table(IDENTITIES)?.delete(identity.id)?;
            txn.open_table(IDENTITY_DOMAINS)?
                .delete((identity.account_id, identity.domain.as_str()))?;
            let mut signers = txn.open_table(DOMAIN_SIGNERS)?;
            let domain = identity.domain.as_str();
            if signers.get(domain)? == Some(identity.id) {
                signers.delete(domain)?;
            }
            Ok(())
        })
        .await
    }

    // ---- templates

    /// Creates or replaces the account's template of `template.name` (id 0 creates). Names
    /// are unique per account.
    pub async fn put_template(&self, template: Template) -> Result<Template, StoreError> {
        if template.id == 0 {
            self.check_room(template.account_id, super::Kept::Templates)?;
        }
        self.write(move |txn| {
            let mut template = template.clone();
            let mut names = txn.open_table(TEMPLATE_NAMES)?;
            let mut table = txn.open_table(TEMPLATES)?;
            let holder = names.get((template.account_id, template.name.as_str()))?;
            if template.id == 0 {
                if holder.is_some() {
                    return Err(StoreError::Conflict(format!("template {}", template.name)));
                }
                template.id = next_id(txn, "template")?;
            } else {
                let Some(old) = table.get(template.id)?.map(|v| decode::<Template>(&v)) else {
                    return Err(StoreError::NotFound(format!("template {}", template.id)));
                };
                let old = old?;
                if holder.is_some_and(|id| id != template.id) {
                    return Err(StoreError::Conflict(format!("template {}", template.name)));
                }
                names.delete((old.account_id, old.name.as_str()))?;
            }
            names.insert((template.account_id, template.name.as_str()), template.id)?;
            table.insert(template.id, encode(&template)?.as_slice())?;
            Ok(template)
        })
        .await
    }

    /// A template by id.
    pub fn template(&self, id: u64) -> Result<Option<Template>, StoreError> {
        self.get(TEMPLATES, id)
    }

    /// The account's template with this name.
    pub fn template_named(
        &self,
        account_id: u64,
        name: &str,
    ) -> Result<Option<Template>, StoreError> {
        let txn = self.db.begin_read()?;
        let names = txn.open_table(TEMPLATE_NAMES)?;
        let Some(id) = names.get((account_id, name))? else {
            return Ok(None);
        };
        let table = txn.open_table(TEMPLATES)?;
        table.get(id)?.map(|value| decode(&value)).transpose()
    }

    /// The templates of an account.
    pub fn templates_of(&self, account_id: u64) -> Result<Vec<Template>, StoreError> {
        self.all_of(TEMPLATES, |template: &Template| {
            template.account_id == account_id
        })
    }

    /// Deletes a template.
    pub async fn delete_template(&self, template: Template) -> Result<(), StoreError> {
        self.write(move |txn| {
            txn.open_table(TEMPLATES)?.delete(template.id)?;
            txn.open_table(TEMPLATE_NAMES)?
                .delete((template.account_id, template.name.as_str()))?;
            Ok(())
        })
        .await
    }
}
