//! The dashboard's people: users with their role, the one-time login code each may have
//! pending, sessions, password-reset links and the login audit log.
//!
//! Secrets never reach the database in clear: passwords are argon2id hashes, and login codes,
//! session tokens and reset tokens are kept as SHA-256 digests (they are random and short
//! lived, so a digest is enough; a leaked database copy gives no working session).

use super::kv::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, decode, encode, next_id};

/// Users by id.
pub(super) const USERS: TableDefinition<u64, &[u8]> = TableDefinition::new("users");
/// Lower-case e-mail address → user id: an address logs in to one user.
pub(super) const USER_EMAILS: TableDefinition<&str, u64> = TableDefinition::new("user_emails");
/// User id → the login code it is waiting for (one at a time: a new one replaces the old).
pub(super) const LOGIN_CODES: TableDefinition<u64, &[u8]> = TableDefinition::new("login_codes");
/// Digest of a session token → the session.
pub(super) const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// (user id, session digest): a user's sessions, to end them all at once.
pub(super) const USER_SESSIONS: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("user_sessions");
/// Digest of a password-reset token → (user id, expiry in milliseconds).
pub(super) const RESET_TOKENS: TableDefinition<&str, (u64, u64)> =
    TableDefinition::new("reset_tokens");
/// (account id, or 0 for operators' logins; sequence) → what happened.
pub(super) const LOGIN_AUDIT: TableDefinition<(u64, u64), &[u8]> =
    TableDefinition::new("login_audit");

/// The platform's own records by name (the account its system mail goes out from).
pub(super) const PLATFORM: TableDefinition<&str, u64> = TableDefinition::new("platform");

/// Entries of the login audit log kept per account; older ones are dropped as new ones come.
pub const AUDIT_KEPT_PER_ACCOUNT: usize = 2_000;

/// What a user may do: a closed set, decided in one place (`crate::access`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything in its account, users and deleting included.
    Owner,
    /// Everything in its account but removing or demoting owners.
    Admin,
    /// Flows, templates, the filter list and resending; no sources, credentials or users.
    Editor,
    /// Reads everything in its account, changes nothing.
    Viewer,
    /// A platform administrator: sees every account.
    Operator,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 5] = [
        Role::Operator,
        Role::Owner,
        Role::Admin,
        Role::Editor,
        Role::Viewer,
    ];

    /// The name used in configuration, on the command line and in forms.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }

    /// The role with this name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == name)
    }
}

/// A person who logs in to the dashboard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Its id.
    pub id: u64,
    /// The account it belongs to; none for operators.
    pub account_id: Option<u64>,
    /// Where its login codes go, lower case.
    pub email: String,
    /// What it may do.
    pub role: Role,
    /// Argon2id hash of its password; none until it sets one (an invited user).
    pub password_hash: Option<String>,
    /// When it was made, in milliseconds since the Unix epoch.
    pub created_at: u64,
    /// Raised by "log out everywhere" and password changes: sessions made before are void.
    #[serde(default)]
    pub sessions_valid_from: u64,
    /// The authenticator app's secret (hex), when the user set one up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_secret: Option<String>,
    /// The last time step whose authenticator code was taken (never twice).
    #[serde(default)]
    pub totp_last_step: u64,
    /// SHA-256 digests of the recovery codes not yet used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovery_codes: Vec<String>,
}

/// The fields of a user to make.
#[derive(Clone, Debug)]
pub struct NewUser {
    /// Its account; none for an operator.
    pub account_id: Option<u64>,
    /// Its e-mail address.
    pub email: String,
    /// Its role; `Operator` exactly when `account_id` is none.
    pub role: Role,
    /// Argon2id hash of its password, if it has one yet.
    pub password_hash: Option<String>,
}

/// A login code waiting to be typed in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCode {
    /// SHA-256 (hex) of the browser's login challenge: the code works only there.
    pub challenge_digest: String,
    /// SHA-256 (hex) of the code with the challenge.
    pub code_digest: String,
    /// Milliseconds since the epoch after which it no longer works.
    pub expires_at: u64,
    /// Wrong guesses still allowed.
    pub tries_left: u32,
    /// No code was mailed: the user answers with its authenticator app or a recovery code.
    #[serde(default)]
    pub authenticator: bool,
}

/// What checking a login code found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeCheck {
    /// The right code: it is spent.
    Accepted,
    /// Wrong; this many tries are left.
    Wrong {
        /// Tries left after this one.
        tries_left: u32,
    },
    /// No code is waiting for this challenge: never sent, already used or replaced.
    NoneWaiting,
    /// The code's time ran out.
    Expired,
    /// Too many wrong guesses: the code is void.
    TooManyTries,
}

/// A logged-in browser.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Whose session it is.
    pub user_id: u64,
    /// When it began.
    pub created_at: u64,
    /// When it was last used (updated at most once a minute).
    pub last_seen: u64,
    /// The token forms must carry back (double submit is not enough for a session store).
    pub csrf_token: String,
    /// Where it logged in from.
    pub address: String,
}

/// How a login attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditOutcome {
    /// Password accepted; a code was mailed.
    CodeSent,
    /// Logged in.
    LoggedIn,
    /// Wrong e-mail address or password.
    WrongPassword,
    /// Wrong login code.
    WrongCode,
    /// An expired, spent or replaced code was tried.
    StaleCode,
    /// Refused for too many attempts.
    Throttled,
    /// Logged out.
    LoggedOut,
    /// Ended every session.
    LoggedOutEverywhere,
    /// A password-reset link was asked for.
    ResetRequested,
    /// The password was changed with a reset link.
    PasswordReset,
}

impl AuditOutcome {
    /// Words for the audit page.
    pub fn describe(self) -> &'static str {
        match self {
            AuditOutcome::CodeSent => "password accepted, code mailed",
            AuditOutcome::LoggedIn => "logged in",
            AuditOutcome::WrongPassword => "wrong e-mail address or password",
            AuditOutcome::WrongCode => "wrong code",
            AuditOutcome::StaleCode => "expired or used code",
            AuditOutcome::Throttled => "refused: too many attempts",
            AuditOutcome::LoggedOut => "logged out",
            AuditOutcome::LoggedOutEverywhere => "logged out everywhere",
            AuditOutcome::ResetRequested => "password reset asked for",
            AuditOutcome::PasswordReset => "password reset",
        }
    }

    /// Whether the attempt failed.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            AuditOutcome::WrongPassword
                | AuditOutcome::WrongCode
                | AuditOutcome::StaleCode
                | AuditOutcome::Throttled
        )
    }
}

/// One line of the login audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When, in milliseconds since the Unix epoch.
    pub at: u64,
    /// The e-mail address given (cut to 254 bytes).
    pub email: String,
    /// The user, when the address belongs to one.
    pub user_id: Option<u64>,
    /// The client's IP address.
    pub address: String,
    /// What happened.
    pub outcome: AuditOutcome,
}

/// The audit log's key for an account (operators' logins are under 0).
fn audit_account(account_id: Option<u64>) -> u64 {
    account_id.unwrap_or(0)
}

fn user_in(txn: &WriteTransaction, id: u64) -> Result<Option<User>, StoreError> {
    txn.open_table(USERS)?
        .get(id)?
        .map(|value| decode(&value))
        .transpose()
}

impl Store {
    /// Makes a user; `Conflict` when the address is taken.
    pub async fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        // Operators are made by the operator's command line, not by an account.
        if let Some(account_id) = new.account_id {
            self.check_room(account_id, super::Kept::Users)?;
        }
        let email = new.email.trim().to_ascii_lowercase();
        self.write(move |txn| {
            let mut emails = txn.open_table(USER_EMAILS)?;
            if emails.get(email.as_str())?.is_some() {
                return Err(StoreError::Conflict(format!("user {email}")));
            }
            let user = User {
                id: next_id(txn, "user")?,
                account_id: new.account_id,
                email: email.clone(),
                role: new.role,
                password_hash: new.password_hash.clone(),
                created_at: super::now_millis(),
                sessions_valid_from: 0,
                totp_secret: None,
                totp_last_step: 0,
                recovery_codes: Vec::new(),
            };
            emails.insert(email.as_str(), user.id)?;
            txn.open_table(USERS)?
                .insert(user.id, encode(&user)?.as_slice())?;
            Ok(user)
        })
        .await
    }

    /// A user by id.
    pub fn user(&self, id: u64) -> Result<Option<User>, StoreError> {
        self.get(USERS, id)
    }

    /// The user an e-mail address belongs to (case does not matter).
    pub fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let email = email.trim().to_ascii_lowercase();
        let txn = self.db.begin_read()?;
        let Some(id) = txn.open_table(USER_EMAILS)?.get(email.as_str())? else {
            return Ok(None);
        };
        drop(txn);
        self.user(id)
    }

    /// The users of an account (`None`: the operators), oldest first.
    pub fn users_of(&self, account_id: Option<u64>) -> Result<Vec<User>, StoreError> {
        self.all_of(USERS, |user: &User| user.account_id == account_id)
    }

    /// Whether any user exists at all.
    pub fn has_users(&self) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(USERS)?.first()?.is_some())
    }

    /// Changes a user's role.
    pub async fn set_user_role(&self, id: u64, role: Role) -> Result<User, StoreError> {
        self.change_user(id, move |user| user.role = role).await
    }

    /// Sets a user's password (an argon2id hash) and voids its sessions made before.
    pub async fn set_user_password(&self, id: u64, hash: String) -> Result<User, StoreError> {
        let now = super::now_millis();
        self.change_user(id, move |user| {
            user.password_hash = Some(hash.clone());
            user.sessions_valid_from = now;
        })
        .await
    }

    async fn change_user(
        &self,
        id: u64,
        change: impl Fn(&mut User) + Send + 'static,
    ) -> Result<User, StoreError> {
        self.write(move |txn| {
            let mut user =
                user_in(txn, id)?.ok_or_else(|| StoreError::NotFound(format!("user {id}")))?;
            change(&mut user);
            txn.open_table(USERS)?
                .insert(id, encode(&user)?.as_slice())?;
            Ok(user)
        })
        .await
    }

    /// Removes a user with its sessions and pending code.
    pub async fn remove_user(&self, id: u64) -> Result<(), StoreError> {
        self.write(move |txn| {
            let user =
                user_in(txn, id)?.ok_or_else(|| StoreError::NotFound(format!("user {id}")))?;
            txn.open_table(USER_EMAILS)?.delete(user.email.as_str())?;
            txn.open_table(USERS)?.delete(id)?;
            txn.open_table(LOGIN_CODES)?.delete(id)?;
            end_sessions_in(txn, id)?;
            Ok(())
        })
        .await
    }

    /// One of the platform's own records (`system-account`, `system-source`...).
    pub fn platform_record(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        txn.open_table(PLATFORM)?.get(name)
    }

    /// Sets one of the platform's own records.
    pub async fn set_platform_record(&self, name: &str, value: u64) -> Result<(), StoreError> {
        let name = name.to_string();
        self.write(move |txn| {
            txn.open_table(PLATFORM)?.insert(name.as_str(), value)?;
            Ok(())
        })
        .await
    }

    // ---- login codes

    /// Makes `code` the one login code `user_id` may use (any earlier one stops working).
    pub async fn set_login_code(&self, user_id: u64, code: PendingCode) -> Result<(), StoreError> {
        self.write(move |txn| {
            txn.open_table(LOGIN_CODES)?
                .insert(user_id, encode(&code)?.as_slice())?;
            Ok(())
        })
        .await
    }

    /// Sets up (or, with `None`, removes) a user's authenticator app with its recovery codes'
    /// digests; `last_step` is the step of the code that proved the set-up (spent).
    pub async fn set_authenticator(
        &self,
        id: u64,
        secret: Option<String>,
        recovery_digests: Vec<String>,
        last_step: u64,
    ) -> Result<User, StoreError> {
        self.change_user(id, move |user| {
            user.totp_secret = secret.clone();
            user.recovery_codes = recovery_digests.clone();
            user.totp_last_step = last_step;
        })
        .await
    }

    /// Whether a login code is waiting for the browser holding `challenge_digest`.
    pub fn login_code_waiting(
        &self,
        user_id: u64,
        challenge_digest: String,
    ) -> Result<bool, StoreError> {
        let pending: Option<PendingCode> = self.get(LOGIN_CODES, user_id)?;
        Ok(pending.is_some_and(|pending| {
            constant_time_eq(&pending.challenge_digest, &challenge_digest)
                && pending.expires_at > super::now_millis()
        }))
    }

    /// Checks a second factor typed in the browser holding `challenge_digest`, counting the
    /// try: the mailed code (`code_digest`, made as the code's was), the user's authenticator
    /// code (`typed`, checked at `now`, never the same step twice) or one of its recovery codes
    /// (`recovery_digest`). What was right is spent.
    pub async fn check_login_code(
        &self,
        user_id: u64,
        challenge_digest: String,
        code_digest: String,
        typed: String,
        recovery_digest: String,
        now: u64,
    ) -> Result<CodeCheck, StoreError> {
        self.write(move |txn| {
            let mut codes = txn.open_table(LOGIN_CODES)?;
            let Some(mut pending) = codes
                .get(user_id)?
                .map(|value| decode::<PendingCode>(&value))
                .transpose()?
            else {
                return Ok(CodeCheck::NoneWaiting);
            };
            if !constant_time_eq(&pending.challenge_digest, &challenge_digest) {
                return Ok(CodeCheck::NoneWaiting);
            }
            if now >= pending.expires_at {
                codes.delete(user_id)?;
                return Ok(CodeCheck::Expired);
            }
            if pending.tries_left == 0 {
                return Ok(CodeCheck::TooManyTries);
            }
            let mailed =
                !pending.authenticator && constant_time_eq(&pending.code_digest, &code_digest);
            if mailed || other_factor(txn, user_id, &typed, &recovery_digest, now)? {
                codes.delete(user_id)?;
                return Ok(CodeCheck::Accepted);
            }
            pending.tries_left -= 1;
            codes.insert(user_id, encode(&pending)?.as_slice())?;
            Ok(if pending.tries_left == 0 {
                CodeCheck::TooManyTries
            } else {
                CodeCheck::Wrong {
                    tries_left: pending.tries_left,
                }
            })
        })
        .await
    }

    // ---- sessions

    /// Records a new session under the digest of its token.
    pub async fn create_session(
        &self,
        token_digest: String,
        session: SessionRecord,
    ) -> Result<(), StoreError> {
        self.write(move |txn| {
            txn.open_table(SESSIONS)?
                .insert(token_digest.as_str(), encode(&session)?.as_slice())?;
            txn.open_table(USER_SESSIONS)?
                .insert((session.user_id, token_digest.as_str()), ())?;
            Ok(())
        })
        .await
    }

    /// The session a token digest names.
    pub fn session(&self, token_digest: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.get(SESSIONS, token_digest)
    }

    /// Notes that a session was used now.
    pub async fn touch_session(&self, token_digest: String, now: u64) -> Result<(), StoreError> {
        self.write(move |txn| {
            let mut sessions = txn.open_table(SESSIONS)?;
            let Some(mut session) = sessions
                .get(token_digest.as_str())?
                .map(|value| decode::<SessionRecord>(&value))
                .transpose()?
            else {
                return Ok(());
            };
            session.last_seen = now;
            sessions.insert(token_digest.as_str(), encode(&session)?.as_slice())?;
            Ok(())
        })
        .await
    }

    /// Ends one session.
    pub async fn end_session(&self, token_digest: String) -> Result<(), StoreError> {
        self.write(move |txn| {
            let mut sessions = txn.open_table(SESSIONS)?;
            let removed = sessions
                .remove(token_digest.as_str())?
                .map(|session| decode::<SessionRecord>(&session))
                .transpose()?;
            if let Some(session) = removed {
                txn.open_table(USER_SESSIONS)?
                    .delete((session.user_id, token_digest.as_str()))?;
            }
            Ok(())
        })
        .await
    }

    /// Ends every session of a user and voids any made before now.
    pub async fn end_sessions_of(&self, user_id: u64) -> Result<(), StoreError> {
        let now = super::now_millis();
        self.write(move |txn| {
            end_sessions_in(txn, user_id)?;
            if let Some(mut user) = user_in(txn, user_id)? {
                user.sessions_valid_from = now;
                txn.open_table(USERS)?
                    .insert(user_id, encode(&user)?.as_slice())?;
            }
            Ok(())
        })
        .await
    }

    /// Removes sessions that ended by time (idle since `idle_before` or made before
    /// `made_before`); returns how many.
    pub async fn purge_sessions(
        &self,
        idle_before: u64,
        made_before: u64,
    ) -> Result<usize, StoreError> {
        self.write(move |txn| {
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut stale = Vec::new();
            for entry in sessions.iter()? {
                let (digest, session) = entry?;
                let session: SessionRecord = decode(&session)?;
                if session.last_seen < idle_before || session.created_at < made_before {
                    stale.push((digest, session.user_id));
                }
            }
            let mut by_user = txn.open_table(USER_SESSIONS)?;
            for (digest, user_id) in &stale {
                sessions.delete(digest.as_str())?;
                by_user.delete((*user_id, digest.as_str()))?;
            }
            Ok(stale.len())
        })
        .await
    }

    // ---- password reset

    /// Records a reset token's digest for a user, valid until `expires_at`; any earlier token
    /// of the user stops working.
    pub async fn set_reset_token(
        &self,
        user_id: u64,
        token_digest: String,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        self.write(move |txn| {
            let mut tokens = txn.open_table(RESET_TOKENS)?;
            let mut earlier = Vec::new();
            for entry in tokens.iter()? {
                let (digest, owner) = entry?;
                if owner.0 == user_id {
                    earlier.push(digest);
                }
            }
            for digest in earlier {
                tokens.delete(digest.as_str())?;
            }
            tokens.insert(token_digest.as_str(), (user_id, expires_at))?;
            Ok(())
        })
        .await
    }

    /// Spends a reset token: the user it was for, when it exists and has not expired.
    pub async fn take_reset_token(
        &self,
        token_digest: String,
        now: u64,
    ) -> Result<Option<u64>, StoreError> {
        self.write(move |txn| {
            let mut tokens = txn.open_table(RESET_TOKENS)?;
            let removed = tokens.remove(token_digest.as_str())?;
            Ok(removed.and_then(|(user_id, expires_at)| (now < expires_at).then_some(user_id)))
        })
        .await
    }

    // ---- audit

    /// Appends to an account's login audit log (operators' under `None`).
    pub async fn record_login(
        &self,
        account_id: Option<u64>,
        entry: AuditEntry,
    ) -> Result<(), StoreError> {
        let account = audit_account(account_id);
        self.write(move |txn| {
            let sequence = next_id(txn, "login_audit")?;
            let mut audit = txn.open_table(LOGIN_AUDIT)?;
            audit.insert((account, sequence), encode(&entry)?.as_slice())?;
            let kept = audit.range((account, 0)..=(account, u64::MAX))?.count();
            if kept > AUDIT_KEPT_PER_ACCOUNT {
                let oldest: Vec<u64> = audit
                    .range((account, 0)..=(account, u64::MAX))?
                    .take(kept - AUDIT_KEPT_PER_ACCOUNT)
                    .map(|entry| entry.map(|(key, _)| key.1))
                    .collect::<Result<_, _>>()?;
                for sequence in oldest {
                    audit.delete((account, sequence))?;
                }
            }
            Ok(())
        })
        .await
    }

    /// The newest `limit` entries of an account's login audit log, newest first.
    pub fn login_audit(
        &self,
        account_id: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let account = audit_account(account_id);
        let txn = self.db.begin_read()?;
        let audit = txn.open_table(LOGIN_AUDIT)?;
        audit
            .range((account, 0)..=(account, u64::MAX))?
            .rev()
            .take(limit)
            .map(|entry| decode(&entry?.1))
            .collect()
    }
}

/// Whether `typed` is the user's authenticator code now or one of its recovery codes; what
/// matched is spent.
fn other_factor(
    txn: &WriteTransaction,
    user_id: u64,
    typed: &str,
    recovery_digest: &str,
    now: u64,
) -> Result<bool, StoreError> {
    let Some(mut user) = user_in(txn, user_id)? else {
        return Ok(false);
    };
    let secret = user
        .totp_secret
        .as_deref()
        .and_then(|hex| hex::decode(hex).ok());
    let step = secret.and_then(|secret| {
        crate::totp::matching_step(&secret, typed, now / 1000, user.totp_last_step)
    });
    if let Some(step) = step {
        user.totp_last_step = step;
    } else if let Some(index) = user
        .recovery_codes
        .iter()
        .position(|digest| constant_time_eq(digest, recovery_digest))
    {
        user.recovery_codes.remove(index);
    } else {
        return Ok(false);
    }
    txn.open_table(USERS)?
        .insert(user_id, encode(&user)?.as_slice())?;
    Ok(true)
}

fn end_sessions_in(txn: &WriteTransaction, user_id: u64) -> Result<(), StoreError> {
    let mut by_user = txn.open_table(USER_SESSIONS)?;
    let mut digests = Vec::new();
    for entry in by_user.range((user_id, "")..)? {
        let (key, _) = entry?;
        let (user, digest) = key;
        if user != user_id {
            break;
        }
        digests.push(digest.to_string());
    }
    let mut sessions = txn.open_table(SESSIONS)?;
    for digest in &digests {
        sessions.delete(digest.as_str())?;
        by_user.delete((user_id, digest.as_str()))?;
    }
    Ok(())
}

/// Compares two digests without stopping at the first difference.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
