//! What a Redis error means for the caller: worth retrying (the server is unreachable, busy
//! loading, failing over), a refused command (a script error, `WRONGTYPE`, a protocol error:
//! the same command fails again), or a configuration mistake.

use argyll_store::StoreError;
use fred::error::{Error, ErrorKind};

/// Replies of a server that is there but cannot serve right now.
const TRANSIENT_REPLIES: &[&str] = &[
    "LOADING",
    "READONLY",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "BUSY",
    "NOREPLICAS",
];

/// The store error of a fred error.
pub(crate) fn store_error(error: Error) -> StoreError {
    let transient_reply = || {
        let details = error.details().trim_start();
        TRANSIENT_REPLIES.iter().any(|reply| {
            details
                .strip_prefix(reply)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
        })
    };
    match error.kind() {
        ErrorKind::IO
        | ErrorKind::Timeout
        | ErrorKind::Canceled
        | ErrorKind::Cluster
        | ErrorKind::Routing
        | ErrorKind::Backpressure
        | ErrorKind::Sentinel
        | ErrorKind::Auth => StoreError::Unavailable(format!("redis: {error}")),
        ErrorKind::Config | ErrorKind::Url => StoreError::Misconfigured(format!("redis: {error}")),
        _ if transient_reply() => StoreError::Unavailable(format!("redis: {error}")),
        _ => {
            tracing::error!(%error, "Redis refused a command");
            StoreError::Refused(format!("redis: {error}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(kind: ErrorKind, details: &str) -> StoreError {
        store_error(Error::new(kind, details.to_owned()))
    }

    #[test]
    fn unreachable_servers_are_unavailable() {
        for kind in [
            ErrorKind::IO,
            ErrorKind::Timeout,
            ErrorKind::Canceled,
            ErrorKind::Cluster,
            ErrorKind::Routing,
            ErrorKind::Backpressure,
        ] {
            let error = classify(kind.clone(), "connection reset");
            assert!(
                matches!(error, StoreError::Unavailable(_)),
                "{kind:?}: {error}"
            );
        }
    }

    #[test]
    fn a_server_loading_or_failing_over_is_unavailable() {
        for reply in [
            "LOADING Redis is loading the dataset in memory",
            "READONLY You can't write against a read only replica.",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "CLUSTERDOWN The cluster is down",
            "MASTERDOWN Link with MASTER is down",
        ] {
            let error = classify(ErrorKind::Unknown, reply);
            assert!(
                matches!(error, StoreError::Unavailable(_)),
                "{reply}: {error}"
            );
        }
    }

    #[test]
    fn refused_commands_are_not_retried() {
        for (kind, reply) in [
            (
                ErrorKind::InvalidArgument,
                "WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            (
                ErrorKind::Unknown,
                "ERR user_script:3: Script attempted to access nonexistent global variable",
            ),
            (ErrorKind::Protocol, "unexpected frame"),
            (ErrorKind::Parse, "could not parse reply"),
            (ErrorKind::InvalidCommand, "ERR unknown command"),
            (ErrorKind::Unknown, "LOADINGS is not a reply prefix"),
        ] {
            let error = classify(kind.clone(), reply);
            assert!(
                matches!(error, StoreError::Refused(_)),
                "{kind:?} {reply}: {error}"
            );
        }
    }

    #[test]
    fn configuration_mistakes_say_so() {
        let error = classify(ErrorKind::Config, "invalid database");
        assert!(matches!(error, StoreError::Misconfigured(_)), "{error}");
    }
}
