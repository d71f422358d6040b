//! The account services that privileged Flowsteps reach through their capabilities: the
//! account's templates and DKIM signing, over the store and the host's keys.

use std::sync::Arc;

use crate::dkim::{Dkim, Signed};
use crate::plugin::{HostServices, TemplateParts};
use crate::store::Store;

/// [`HostServices`] over the store and the DKIM service.
#[derive(Debug)]
pub struct AccountServices {
    store: Store,
    dkim: Arc<Dkim>,
}

impl AccountServices {
    /// Services over this store and these keys.
    pub fn new(store: Store, dkim: Arc<Dkim>) -> Self {
        Self { store, dkim }
    }
}

impl HostServices for AccountServices {
    fn template(&self, account_id: u64, name: &str) -> Result<Option<TemplateParts>, String> {
        let template = self
            .store
            .template_named(account_id, name)
            .map_err(|error| error.to_string())?;
        Ok(template.map(|template| TemplateParts {
            subject: template.subject,
            html: template.html,
            text: template.text,
        }))
    }

    fn sign(&self, account_id: u64, raw: &[u8]) -> Result<Signed, String> {
        self.dkim
            .sign(account_id, raw)
            .map_err(|error| error.to_string())
    }
}
