//! Process exit codes, compatible with fetchmail's so existing cron scripts
//! keep working, and the rule for merging the outcomes of many accounts.

use std::fmt;

/// What one account's run (or the whole program) ended with.
///
/// The numeric values are the contract in the README and man page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitCode {
    /// One or more messages were retrieved (with `--check`: mail is waiting).
    Retrieved,
    /// No new mail.
    NoMail,
    /// A network or TLS error.
    Network,
    /// Authentication failed.
    Auth,
    /// The server spoke the protocol wrongly.
    Protocol,
    /// A bad config file or command line.
    Config,
    /// The config file holds a secret and is readable by others.
    UnsafePermissions,
    /// The server reported an error or timed out.
    Server,
    /// Another mailretr holds the lock for the account.
    Locked,
    /// A delivery failed and could not be spooled.
    Delivery,
    /// Mail was retrieved, but `fetch_limit` or `max_bytes_per_run` stopped
    /// the run with more left on the server (fetchmail's `PS_MAXFETCH`).
    LimitReached,
    /// A bug or an unexpected local failure.
    Internal,
}

impl ExitCode {
    /// The process exit status.
    pub fn code(self) -> i32 {
        match self {
            ExitCode::Retrieved => 0,
            ExitCode::NoMail => 1,
            ExitCode::Network => 2,
            ExitCode::Auth => 3,
            ExitCode::Protocol => 4,
            ExitCode::Config => 5,
            ExitCode::UnsafePermissions => 6,
            ExitCode::Server => 7,
            ExitCode::Locked => 8,
            ExitCode::Delivery => 10,
            ExitCode::LimitReached => 13,
            ExitCode::Internal => 23,
        }
    }

    /// How serious a failure is, for picking the one to report when no
    /// account retrieved mail. Higher is worse. A reached limit is no
    /// failure (mail was delivered, more waits for the next run), so any
    /// real failure of another account outranks it; as in fetchmail, it
    /// does not count as a retrieval either, so it outranks only "no mail".
    fn severity(self) -> u8 {
        match self {
            ExitCode::Retrieved => 0,
            ExitCode::NoMail => 1,
            ExitCode::LimitReached => 2,
            ExitCode::Locked => 3,
            ExitCode::Server => 4,
            ExitCode::Network => 5,
            ExitCode::Protocol => 6,
            ExitCode::Auth => 7,
            ExitCode::Delivery => 8,
            ExitCode::Config => 9,
            ExitCode::UnsafePermissions => 10,
            ExitCode::Internal => 11,
        }
    }

    /// The more serious of two outcomes (no "any retrieval wins" rule).
    pub fn worse(self, other: ExitCode) -> ExitCode {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    /// Merges the outcomes of several accounts: success if any account
    /// retrieved mail, otherwise the most serious failure.
    pub fn merge(self, other: ExitCode) -> ExitCode {
        if self == ExitCode::Retrieved || other == ExitCode::Retrieved {
            ExitCode::Retrieved
        } else if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for ExitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::ExitCode::*;

    #[test]
    fn any_retrieval_wins() {
        assert_eq!(Auth.merge(Retrieved), Retrieved);
        assert_eq!(Retrieved.merge(Network), Retrieved);
    }

    #[test]
    fn worst_failure_wins_otherwise() {
        assert_eq!(NoMail.merge(Network), Network);
        assert_eq!(Auth.merge(Network), Auth);
        assert_eq!(NoMail.merge(NoMail), NoMail);
        assert_eq!(Locked.merge(NoMail), Locked);
    }

    #[test]
    fn a_reached_limit_outranks_only_no_mail() {
        assert_eq!(NoMail.merge(LimitReached), LimitReached);
        assert_eq!(LimitReached.merge(Network), Network);
        assert_eq!(LimitReached.merge(Retrieved), Retrieved);
        assert_eq!(LimitReached.code(), 13);
    }
}
