//! What a message's fan-out came to: the per-destination results sorted
//! by the one failure classifier (`Error::failure`) into a single verdict
//! for the message. Pure functions, unit-tested over every kind of result
//! the destinations produce.
//!
//! The rules (SPEC "What a failure does"):
//!
//! - a temporary failure (at a destination, or for one recipient) is owed:
//!   the spool takes it, and the message counts as dealt with;
//! - a refusal for good is what `on_refused` acts on;
//! - a local fault when no destination took the message stops the run:
//!   nothing is recorded, nothing deleted, and the next run tries again;
//!   when some destination did take it, the faulty ones are owed (spooled,
//!   retried from there, never bounced for it), so nothing is delivered
//!   twice.

use crate::destination::DeliveryReport;
use crate::error::{Error, Failure, Result};
use crate::store::commit::Owed;

/// One destination's result for a message.
pub(crate) struct Attempt {
    /// The destination's name.
    pub destination: String,
    /// The recipients it was to deliver to (all owed when it failed as a
    /// whole).
    pub recipients: Vec<String>,
    /// What it did.
    pub result: Result<DeliveryReport>,
}

/// The verdict on one downloaded message.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Every destination has it, or owes it for now (`owed`, spooled).
    Delivered {
        /// What the spool must hold.
        owed: Vec<Owed>,
        /// A local fault behind some of `owed`: the run ends non-zero.
        fault: Option<Error>,
    },
    /// Some destination refused it for good (`why`); others may owe it.
    Refused {
        /// The refusals, as one line.
        why: String,
        /// What the spool must hold for the others.
        owed: Vec<Owed>,
        /// A local fault behind some of `owed`: the run ends non-zero.
        fault: Option<Error>,
    },
    /// A local fault, and nobody took the message: stop, record nothing.
    Local(Error),
}

/// Sorts the results of delivering one message to every destination.
pub(crate) fn judge(results: Vec<Attempt>) -> Verdict {
    let mut owed: Vec<Owed> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let mut local: Option<Error> = None;
    let mut local_owed: Vec<Owed> = Vec::new();
    let mut accepted_any = false;
    let owe =
        |list: &mut Vec<Owed>, destination: &str, recipient: Vec<String>, error: String| match list
            .iter_mut()
            .find(|o| o.destination == destination)
        {
            Some(o) => {
                o.recipients.extend(recipient);
                o.error = format!("{}; {error}", o.error);
            }
            None => list.push(Owed {
                destination: destination.to_string(),
                recipients: recipient,
                error,
            }),
        };
    for r in results {
        match r.result {
            Ok(report) => {
                accepted_any |= !report.accepted.is_empty();
                for refusal in report.refused {
                    let text = refusal.error.detail_for(&refusal.recipient);
                    match refusal.error.failure() {
                        Failure::Temporary => {
                            owe(&mut owed, &r.destination, vec![refusal.recipient], text)
                        }
                        Failure::Refused => refused.push(format!("{}: {text}", r.destination)),
                        Failure::Local => {
                            owe(
                                &mut local_owed,
                                &r.destination,
                                vec![refusal.recipient],
                                format!("{text} (a local fault)"),
                            );
                            local.get_or_insert(refusal.error);
                        }
                    }
                }
            }
            Err(e) => match e.failure() {
                Failure::Temporary => owe(&mut owed, &r.destination, r.recipients, e.detail()),
                Failure::Refused => refused.push(format!("{}: {}", r.destination, e.detail())),
                Failure::Local => {
                    owe(
                        &mut local_owed,
                        &r.destination,
                        r.recipients,
                        format!("{} (a local fault)", e.detail()),
                    );
                    local.get_or_insert(e);
                }
            },
        }
    }
    if let Some(e) = local {
        if !accepted_any {
            return Verdict::Local(e);
        }
        // Someone has it: taking it again from the server would deliver
        // it twice there, so the faulty destinations are owed it.
        for o in local_owed {
            owe(&mut owed, &o.destination, o.recipients, o.error);
        }
        local = Some(e);
    }
    if refused.is_empty() {
        Verdict::Delivered { owed, fault: local }
    } else {
        Verdict::Refused {
            why: refused.join("; "),
            owed,
            fault: local,
        }
    }
}

/// The verdict on a message that no destination accepted a recipient of
/// before its body was downloaded (headers first).
#[derive(Debug)]
pub(crate) enum Unopened {
    /// Some destination failed for now (why, naming it): left on the
    /// server for the next run, not downloaded.
    Deferred(String),
    /// Refused for good everywhere (why): `on_refused` decides.
    Refused(String),
    /// A local fault: stop, record nothing.
    Local(Error),
}

/// Sorts the envelope answers of a message nobody accepted.
pub(crate) fn judge_unopened(results: Vec<(String, Result<DeliveryReport>)>) -> Unopened {
    let mut refused = Vec::new();
    let mut deferred = None;
    for (name, result) in results {
        let errors: Vec<(Option<String>, Error)> = match result {
            Err(e) => vec![(None, e)],
            Ok(report) => report
                .refused
                .into_iter()
                .map(|r| (Some(r.recipient), r.error))
                .collect(),
        };
        for (recipient, e) in errors {
            let text = match &recipient {
                Some(r) => format!("{name}: {}", e.detail_for(r)),
                None => format!("{name}: {}", e.detail()),
            };
            match e.failure() {
                Failure::Local => return Unopened::Local(e),
                Failure::Temporary => {
                    deferred.get_or_insert(text);
                }
                Failure::Refused => refused.push(text),
            }
        }
    }
    match deferred {
        Some(e) => Unopened::Deferred(e),
        None if refused.is_empty() => Unopened::Refused("no recipients".into()),
        None => Unopened::Refused(refused.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::Refusal;

    fn err(failure: Failure) -> Error {
        Error::delivery("d", format!("{failure}"), failure)
    }

    fn whole(destination: &str, result: Result<DeliveryReport>) -> Attempt {
        Attempt {
            destination: destination.into(),
            recipients: vec!["a@x".into(), "b@x".into()],
            result,
        }
    }

    fn partial(accepted: &[&str], refused: &[(&str, Failure)]) -> Result<DeliveryReport> {
        Ok(DeliveryReport {
            accepted: accepted.iter().map(|s| s.to_string()).collect(),
            refused: refused
                .iter()
                .map(|(r, f)| Refusal {
                    recipient: r.to_string(),
                    error: err(*f),
                })
                .collect(),
        })
    }

    #[test]
    fn all_delivered() {
        let v = judge(vec![whole("m", partial(&["a@x", "b@x"], &[]))]);
        assert!(matches!(v, Verdict::Delivered { owed, .. } if owed.is_empty()));
    }

    #[test]
    fn temporary_is_owed_whole_or_per_recipient() {
        let v = judge(vec![
            whole("m", partial(&["a@x"], &[("b@x", Failure::Temporary)])),
            whole("relay", Err(err(Failure::Temporary))),
        ]);
        let Verdict::Delivered { owed, .. } = v else {
            panic!("{v:?}")
        };
        assert_eq!(owed.len(), 2);
        assert_eq!(owed[0].destination, "m");
        assert_eq!(owed[0].recipients, vec!["b@x"]);
        assert_eq!(owed[1].recipients, vec!["a@x", "b@x"]);
    }

    #[test]
    fn a_refusal_is_a_refusal_and_others_still_owe() {
        let v = judge(vec![
            whole("relay", Err(err(Failure::Refused))),
            whole("lmtp", Err(err(Failure::Temporary))),
        ]);
        let Verdict::Refused { why, owed, .. } = v else {
            panic!("{v:?}")
        };
        assert!(why.contains("refused"), "{why}");
        assert_eq!(owed.len(), 1);
    }

    #[test]
    fn a_local_fault_with_nobody_delivered_stops_and_is_never_a_refusal() {
        for other in [
            Err(err(Failure::Refused)),
            Err(err(Failure::Temporary)),
            partial(&[], &[("a@x", Failure::Refused)]),
        ] {
            let v = judge(vec![
                whole("home", Err(err(Failure::Local))),
                whole("x", other),
            ]);
            assert!(matches!(v, Verdict::Local(_)), "{v:?}");
        }
        let v = judge(vec![whole(
            "home",
            partial(&[], &[("a@x", Failure::Local), ("b@x", Failure::Local)]),
        )]);
        assert!(matches!(v, Verdict::Local(_)), "{v:?}");
    }

    #[test]
    fn a_local_fault_after_someone_delivered_is_owed_not_dropped() {
        let v = judge(vec![
            whole("home", partial(&["a@x"], &[("b@x", Failure::Local)])),
            whole("mda", Err(err(Failure::Local))),
        ]);
        let Verdict::Delivered { owed, .. } = v else {
            panic!("{v:?}")
        };
        assert_eq!(owed.len(), 2);
        assert!(owed.iter().all(|o| o.error.contains("local fault")));
    }

    #[test]
    fn unopened_messages() {
        let r = |f| vec![("relay".to_string(), Err(err(f)))];
        assert!(matches!(
            judge_unopened(r(Failure::Temporary)),
            Unopened::Deferred(_)
        ));
        assert!(matches!(
            judge_unopened(r(Failure::Refused)),
            Unopened::Refused(_)
        ));
        assert!(matches!(
            judge_unopened(r(Failure::Local)),
            Unopened::Local(_)
        ));
        let mixed = vec![
            ("a".to_string(), partial(&[], &[("x@y", Failure::Refused)])),
            ("b".to_string(), Err(err(Failure::Local))),
        ];
        assert!(matches!(judge_unopened(mixed), Unopened::Local(_)));
    }

    #[test]
    fn texts_name_the_destination_and_the_recipient_once() {
        let rcpt = |r: &str, code: &str, failure| Refusal {
            recipient: r.into(),
            error: Error::delivery("relay", format!("RCPT TO:<{r}>: {code} no"), failure),
        };
        let lmtp = Refusal {
            recipient: "b@x".into(),
            error: Error::delivery("lmtp", "after DATA: 452 4.2.2 full", Failure::Temporary),
        };
        let v = judge(vec![
            whole(
                "relay",
                Ok(DeliveryReport {
                    accepted: vec![],
                    refused: vec![rcpt("a@x", "550 5.1.1", Failure::Refused)],
                }),
            ),
            whole(
                "lmtp",
                Ok(DeliveryReport {
                    accepted: vec!["a@x".into()],
                    refused: vec![lmtp],
                }),
            ),
            whole(
                "mx",
                Err(Error::delivery(
                    "mx",
                    "after DATA: 554 5.7.1 spam",
                    Failure::Refused,
                )),
            ),
        ]);
        let Verdict::Refused { why, owed, .. } = v else {
            panic!("{v:?}")
        };
        assert_eq!(
            why,
            "relay: RCPT TO:<a@x>: 550 5.1.1 no; mx: after DATA: 554 5.7.1 spam"
        );
        assert_eq!(owed[0].error, "<b@x>: after DATA: 452 4.2.2 full");

        let deferred = judge_unopened(vec![(
            "relay".into(),
            Ok(DeliveryReport {
                accepted: vec![],
                refused: vec![rcpt("a@x", "451 4.2.0", Failure::Temporary)],
            }),
        )]);
        let Unopened::Deferred(why) = deferred else {
            panic!("{deferred:?}")
        };
        assert_eq!(why, "relay: RCPT TO:<a@x>: 451 4.2.0 no");
        assert!(!why.contains("delivery to"), "{why}");
    }

    #[test]
    fn every_error_kind_is_classified_once() {
        use std::io;
        let io_err = |errno| io::Error::from_raw_os_error(errno);
        let local = |errno| crate::destination::local_error("d", "w", &io_err(errno)).failure();
        assert_eq!(local(libc::ENOSPC), Failure::Temporary);
        assert_eq!(local(libc::EDQUOT), Failure::Temporary);
        for errno in [
            libc::EACCES,
            libc::EROFS,
            libc::EIO,
            libc::ENOTDIR,
            libc::EPERM,
        ] {
            assert_eq!(local(errno), Failure::Local, "errno {errno}");
        }
        assert_eq!(
            crate::destination::mda::exit_failure(75),
            Failure::Temporary
        );
        for code in [65, 67, 68] {
            assert_eq!(
                crate::destination::mda::exit_failure(code),
                Failure::Refused
            );
        }
        for code in [1, 2, 64, 69, 70, 73, 77, 78, 126, 127] {
            assert_eq!(crate::destination::mda::exit_failure(code), Failure::Local);
        }
        assert_eq!(Error::Protocol("x".into()).failure(), Failure::Local);
        assert_eq!(Error::Internal("x".into()).failure(), Failure::Local);
        assert_eq!(Error::Tls("x".into()).failure(), Failure::Local);
        assert_eq!(
            Error::net("x", io::Error::from(io::ErrorKind::ConnectionReset)).failure(),
            Failure::Temporary
        );
        assert_eq!(Error::Timeout("x".into()).failure(), Failure::Temporary);
    }
}
