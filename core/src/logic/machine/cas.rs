//! The plain CAS update: `gets`, the caller's function, then `cas` (or `add` for a missing
//! key, compare-and-delete for [`Update::Delete`]); a lost race pauses with jittered,
//! growing backoff and starts over, within [`CasOptions::max_attempts`] and
//! [`CasOptions::deadline`].

use super::{
    out_of_order, pause_before, single, Answer, Call, Cx, Input, Item, Machine, Request, Rng, Step,
};
use crate::error::Error;
use crate::logic::recipe::{no_cas, CasOptions, CasOutcome, Update};
use crate::ops::Value;
use crate::protocol::text::StoreMode;
use bytes::Bytes;
use std::time::Duration;

#[derive(Debug)]
enum State {
    Start,
    Reading,
    Deciding(Option<Value>),
    Writing(fn(u32) -> CasOutcome),
    Waiting,
    Done,
}

/// [`crate::Client::cas_update`] as a machine. Its view is the current value (with its CAS
/// unique), `None` when the key is missing.
#[derive(Debug)]
pub struct CasUpdate {
    key: Bytes,
    server: usize,
    opts: CasOptions,
    rng: Rng,
    attempts: u32,
    start: Duration,
    state: State,
}

impl CasUpdate {
    /// Update `key` with `opts`; `seed` feeds the backoff jitter.
    pub fn new(key: &[u8], opts: CasOptions, seed: u64) -> Self {
        CasUpdate {
            key: Bytes::copy_from_slice(key),
            server: 0,
            opts,
            rng: Rng::new(seed),
            attempts: 0,
            start: Duration::ZERO,
            state: State::Start,
        }
    }

    /// The server the update reads and stores on (the key's owner), once started.
    pub fn server(&self) -> usize {
        self.server
    }

    fn read(&mut self) -> Step<CasOutcome, Value> {
        self.attempts += 1;
        self.state = State::Reading;
        Step::Send(vec![Request::new(
            self.server,
            Call::Get {
                key: self.key.clone(),
                cas: true,
            },
        )])
    }

    fn write(&mut self, call: Call, outcome: fn(u32) -> CasOutcome) -> Step<CasOutcome, Value> {
        self.state = State::Writing(outcome);
        Step::Send(vec![Request::new(self.server, call)])
    }

    fn store(&self, mode: StoreMode, data: Vec<u8>, flags: Option<u32>) -> Call {
        Call::Store(Item {
            key: self.key.clone(),
            data: data.into(),
            mode,
            flags: flags.unwrap_or(self.opts.flags),
            ttl: self.opts.ttl,
        })
    }

    /// `add` over a missing key, `cas` over the value read.
    fn store_over(
        &mut self,
        cur: Option<Value>,
        new: Vec<u8>,
        flags: Option<u32>,
    ) -> Step<CasOutcome, Value> {
        let mode = match cur {
            None => StoreMode::Add,
            Some(v) => match v.cas {
                Some(cas) => StoreMode::Cas(cas),
                None => return self.done(Err(no_cas(&self.key))),
            },
        };
        let call = self.store(mode, new, flags);
        self.write(call, |attempts| CasOutcome::Stored { attempts })
    }

    fn done(&mut self, r: Result<CasOutcome, Error>) -> Step<CasOutcome, Value> {
        self.state = State::Done;
        Step::Done(r)
    }
}

impl Machine for CasUpdate {
    type Output = CasOutcome;
    type View = Value;

    fn step(&mut self, cx: &Cx<'_>, input: Input) -> Step<CasOutcome, Value> {
        let state = std::mem::replace(&mut self.state, State::Done);
        match (state, input) {
            (State::Start, Input::Start) => match cx.cluster.route(&self.key) {
                Ok(s) => {
                    self.server = s;
                    self.start = cx.now.mono;
                    self.read()
                }
                Err(e) => self.done(Err(e)),
            },
            (State::Reading, Input::Answers(a)) => {
                let cur = Answer::into_value(single(a));
                cx.cluster.tally_read(self.server, &cur);
                match cur {
                    Ok(cur) => {
                        self.state = State::Deciding(cur.clone());
                        Step::Decide(cur)
                    }
                    Err(e) => self.done(Err(e)),
                }
            }
            (State::Deciding(cur), Input::Decided(update)) => {
                let attempts = self.attempts;
                let update = match update {
                    Ok(u) => u,
                    Err(e) => return self.done(Err(e)),
                };
                match (update, cur) {
                    (Update::Keep, _) => self.done(Ok(CasOutcome::Unchanged { attempts })),
                    (Update::Delete, None) => self.done(Ok(CasOutcome::Deleted { attempts })),
                    (Update::Delete, Some(v)) => match v.cas {
                        Some(cas) => self.write(
                            Call::CasDelete {
                                key: self.key.clone(),
                                cas,
                            },
                            |attempts| CasOutcome::Deleted { attempts },
                        ),
                        None => self.done(Err(no_cas(&self.key))),
                    },
                    (Update::Plain(new, flags), cur) => self.store_over(cur, new, Some(flags)),
                    (Update::Set(new) | Update::Typed(_, _, new), cur) => {
                        self.store_over(cur, new, None)
                    }
                }
            }
            (State::Writing(outcome), Input::Answers(a)) => {
                let r = Answer::into_done(single(a));
                if r.is_ok() {
                    cx.cluster.tally_store(self.server, &r);
                }
                match r {
                    Ok(()) => self.done(Ok(outcome(self.attempts))),
                    // Lost a race: someone wrote (EXISTS), deleted (NOT_FOUND) or created the
                    // key first (NOT_STORED on add). Read again, after a pause.
                    Err(Error::Exists | Error::NotFound | Error::NotStored) => {
                        let elapsed = cx.now.mono.saturating_sub(self.start);
                        if self.attempts >= self.opts.max_attempts.max(1)
                            || elapsed >= self.opts.deadline
                        {
                            return self.done(Err(Error::CasRetriesExhausted {
                                key: String::from_utf8_lossy(&self.key).into_owned(),
                                attempts: self.attempts,
                            }));
                        }
                        self.state = State::Waiting;
                        Step::Wait(pause_before(
                            self.attempts,
                            self.opts.base_backoff,
                            self.opts.max_backoff,
                            &mut self.rng,
                            cx.now.mono,
                            self.start,
                            self.opts.deadline,
                        ))
                    }
                    Err(e) => self.done(Err(e)),
                }
            }
            (State::Waiting, Input::Woke) => self.read(),
            (_, input) => out_of_order("cas_update", &input),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::script::{at, cluster};
    use super::*;

    fn value(data: &str, cas: u64) -> Value {
        Value {
            data: Bytes::copy_from_slice(data.as_bytes()),
            flags: 0,
            cas: Some(cas),
            ttl: None,
        }
    }

    #[test]
    fn conflict_pauses_rereads_and_stores() {
        let cl = cluster(3);
        let mut m = CasUpdate::new(b"k", CasOptions::default(), 7);
        let Step::Send(r) = m.step(&at(&cl, 0), Input::Start) else {
            panic!()
        };
        assert!(matches!(r[0].call, Call::Get { cas: true, .. }));
        let Step::Decide(Some(v)) = m.step(
            &at(&cl, 1),
            Input::Answers(vec![Ok(Answer::Value(Some(value("a", 5))))]),
        ) else {
            panic!()
        };
        assert_eq!(&v.data[..], b"a");
        let Step::Send(r) = m.step(&at(&cl, 1), Input::Decided(Ok(Update::Set(b"ab".to_vec()))))
        else {
            panic!()
        };
        assert!(matches!(
            &r[0].call,
            Call::Store(Item {
                mode: StoreMode::Cas(5),
                ..
            })
        ));
        let Step::Wait(d) = m.step(&at(&cl, 2), Input::Answers(vec![Err(Error::Exists)])) else {
            panic!()
        };
        assert!(d <= Duration::from_millis(1));
        let Step::Send(_) = m.step(&at(&cl, 3), Input::Woke) else {
            panic!()
        };
        let Step::Decide(None) = m.step(&at(&cl, 3), Input::Answers(vec![Ok(Answer::Value(None))]))
        else {
            panic!()
        };
        let Step::Send(r) = m.step(&at(&cl, 3), Input::Decided(Ok(Update::Set(b"b".to_vec()))))
        else {
            panic!()
        };
        assert!(matches!(
            &r[0].call,
            Call::Store(Item {
                mode: StoreMode::Add,
                ..
            })
        ));
        let Step::Done(Ok(CasOutcome::Stored { attempts: 2 })) =
            m.step(&at(&cl, 4), Input::Answers(vec![Ok(Answer::Done)]))
        else {
            panic!()
        };
    }

    #[test]
    fn gives_up_at_the_attempt_limit() {
        let cl = cluster(1);
        let opts = CasOptions {
            max_attempts: 1,
            ..CasOptions::default()
        };
        let mut m = CasUpdate::new(b"k", opts, 1);
        m.step(&at(&cl, 0), Input::Start);
        m.step(&at(&cl, 0), Input::Answers(vec![Ok(Answer::Value(None))]));
        m.step(&at(&cl, 0), Input::Decided(Ok(Update::Set(b"x".to_vec()))));
        let Step::Done(Err(Error::CasRetriesExhausted { attempts: 1, .. })) =
            m.step(&at(&cl, 0), Input::Answers(vec![Err(Error::NotStored)]))
        else {
            panic!()
        };
    }

    #[test]
    fn a_failed_decision_ends_it_without_writing() {
        let cl = cluster(1);
        let mut m = CasUpdate::new(b"k", CasOptions::default(), 1);
        m.step(&at(&cl, 0), Input::Start);
        m.step(&at(&cl, 0), Input::Answers(vec![Ok(Answer::Value(None))]));
        let Step::Done(Err(Error::Loader(_))) =
            m.step(&at(&cl, 0), Input::Decided(Err(Error::Loader("no".into()))))
        else {
            panic!()
        };
        let Step::Done(Err(Error::Client { .. })) = m.step(&at(&cl, 0), Input::Woke) else {
            panic!()
        };
    }
}
