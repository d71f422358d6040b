//! Who may see or change what. The REST API and the dashboard ask this one place, so a page
//! can never allow what the API refuses (or the reverse).
//!
//! | action | viewer | editor | admin | owner | operator | API credential |
//! |---|---|---|---|---|---|---|
//! | read the account's flows, messages, events, statistics, filter list | ✓ | ✓ | ✓ | ✓ | ✓ (every account) | ✓ |
//! | send, simulate (a template's preview too), resend | | ✓ | ✓ | ✓ | | ✓ |
//! | edit flows, rules, templates, the filter list | | ✓ | ✓ | ✓ | | ✓ |
//! | sources, credentials, sender identities, webhooks, plugins, classifier | | | ✓ | ✓ | | ✓ |
//! | users (not owners), the login audit log | | | ✓ | ✓ | ✓ (every account) | |
//! | owners | | | | ✓ | ✓ (every account) | |
//! | operator pages (accounts, queues, the plugin folder) | | | | | ✓ | |
//!
//! Operators look after the platform: they read every account and manage its users (to
//! invite a first owner), but they do not edit a customer's mail, flows or settings.

use crate::store::Role;

/// Who is asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Principal {
    /// An API client authenticated with a source's credential.
    Credential {
        /// The account the credential belongs to.
        account_id: u64,
    },
    /// A dashboard user.
    User {
        /// Its account; none for an operator.
        account_id: Option<u64>,
        /// Its role.
        role: Role,
    },
}

/// What is being done, a closed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read anything of the account but secrets.
    Read,
    /// Submit, simulate or resend mail.
    Send,
    /// Change flows, flow rules, templates or the filter list.
    Edit,
    /// Change sources, credentials, sender identities, webhooks, plugins or the classifier.
    Configure,
    /// Add, change or remove users who are not owners; read the login audit log.
    ManageUsers,
    /// Add, change or remove owners.
    ManageOwners,
    /// The platform's own pages.
    Operate,
}

/// Whether `principal` may do `action` in account `account_id` (for `Operate`, any value).
pub fn may(principal: Principal, action: Action, account_id: u64) -> bool {
    match principal {
        Principal::Credential { account_id: own } => {
            own == account_id
                && matches!(
                    action,
                    Action::Read | Action::Send | Action::Edit | Action::Configure
                )
        }
        Principal::User {
            role: Role::Operator,
            ..
        } => matches!(
            action,
            Action::Read | Action::ManageUsers | Action::ManageOwners | Action::Operate
        ),
        Principal::User {
            account_id: Some(own),
            role,
        } => own == account_id && role_allows(role, action),
        Principal::User {
            account_id: None, ..
        } => false,
    }
}

fn role_allows(role: Role, action: Action) -> bool {
    match action {
        Action::Read => true,
        Action::Send | Action::Edit => matches!(role, Role::Editor | Role::Admin | Role::Owner),
        Action::Configure | Action::ManageUsers => matches!(role, Role::Admin | Role::Owner),
        Action::ManageOwners => role == Role::Owner,
        Action::Operate => false,
    }
}

/// Whether `principal` may give a user `role` (or change or remove a user who has it).
pub fn may_assign(principal: Principal, role: Role, account_id: u64) -> bool {
    match role {
        Role::Operator => false,
        Role::Owner => may(principal, Action::ManageOwners, account_id),
        Role::Admin | Role::Editor | Role::Viewer => {
            may(principal, Action::ManageUsers, account_id)
        }
    }
}

/// What a role of an account may do, in a sentence: the table above, row by row.
pub fn summary(role: Role) -> &'static str {
    match role {
        Role::Owner => "everything in the account: mail, flows, settings, users and owners",
        Role::Admin => "everything in the account but changing or removing owners",
        Role::Editor => {
            "reads the account, sends mail and edits flows, rules, templates and the filter list"
        }
        Role::Viewer => "reads everything in the account, changes nothing",
        Role::Operator => "looks after the platform: reads every account and manages its users",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(account: u64, role: Role) -> Principal {
        Principal::User {
            account_id: Some(account),
            role,
        }
    }

    #[test]
    fn nobody_reaches_into_another_account_but_operators_reading() {
        for role in [Role::Owner, Role::Admin, Role::Editor, Role::Viewer] {
            for action in [
                Action::Read,
                Action::Send,
                Action::Edit,
                Action::Configure,
                Action::ManageUsers,
                Action::ManageOwners,
            ] {
                assert!(!may(user(1, role), action, 2), "{role:?} {action:?}");
            }
        }
        assert!(!may(
            Principal::Credential { account_id: 1 },
            Action::Read,
            2
        ));
        let operator = Principal::User {
            account_id: None,
            role: Role::Operator,
        };
        assert!(may(operator, Action::Read, 7));
        assert!(!may(operator, Action::Edit, 7));
        assert!(!may(operator, Action::Send, 7));
    }

    #[test]
    fn roles_grow_from_viewer_to_owner() {
        assert!(may(user(1, Role::Viewer), Action::Read, 1));
        assert!(!may(user(1, Role::Viewer), Action::Edit, 1));
        assert!(!may(user(1, Role::Viewer), Action::Send, 1));
        assert!(may(user(1, Role::Editor), Action::Edit, 1));
        assert!(!may(user(1, Role::Editor), Action::Configure, 1));
        assert!(may(user(1, Role::Admin), Action::Configure, 1));
        assert!(may(user(1, Role::Admin), Action::ManageUsers, 1));
        assert!(!may(user(1, Role::Admin), Action::ManageOwners, 1));
        assert!(may(user(1, Role::Owner), Action::ManageOwners, 1));
        assert!(!may(user(1, Role::Owner), Action::Operate, 1));
    }

    #[test]
    fn only_owners_make_owners_and_nobody_makes_operators() {
        assert!(may_assign(user(1, Role::Admin), Role::Editor, 1));
        assert!(!may_assign(user(1, Role::Admin), Role::Owner, 1));
        assert!(may_assign(user(1, Role::Owner), Role::Owner, 1));
        assert!(!may_assign(user(1, Role::Owner), Role::Operator, 1));
        assert!(!may_assign(user(1, Role::Editor), Role::Viewer, 1));
        assert!(!may_assign(
            Principal::Credential { account_id: 1 },
            Role::Viewer,
            1
        ));
    }
}
