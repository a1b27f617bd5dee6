//! memcached's `incr`/`decr` with an initial value (libmemcached's
//! `memcached_increment_with_initial`): a missing counter is created with `add` of the initial
//! value, so a concurrent creator wins and this call counts on top of its value instead.
//! (Replicated counters are [`super::replicated::Rule::Incr`].)

use super::{out_of_order, single, Answer, Call, Cx, Input, Item, Machine, Request, Step};
use crate::error::Error;
use crate::protocol::text::StoreMode;
use bytes::Bytes;

/// How many times a counter may vanish between its `incr` and its `add` before giving up.
const TRIES: u32 = 3;

#[derive(Debug)]
enum State {
    Start,
    Arith,
    Add,
    Done,
}

/// `incr`/`decr` of a plain counter, created at `initial` when missing. Done with the new
/// value (`initial` when it was created), or `None` when missing and no initial was given.
#[derive(Debug)]
pub struct IncrInitial {
    key: Bytes,
    incr: bool,
    delta: u64,
    initial: Option<u64>,
    ttl: u32,
    server: usize,
    tries: u32,
    state: State,
}

impl IncrInitial {
    /// Add (`incr`) or subtract `delta` to `key`; create it at `initial` with `ttl` if missing.
    pub fn new(key: &[u8], incr: bool, delta: u64, initial: Option<u64>, ttl: u32) -> Self {
        IncrInitial {
            key: Bytes::copy_from_slice(key),
            incr,
            delta,
            initial,
            ttl,
            server: 0,
            tries: 0,
            state: State::Start,
        }
    }

    fn arith(&mut self) -> Step<Option<u64>> {
        self.tries += 1;
        self.state = State::Arith;
        Step::Send(vec![Request::new(
            self.server,
            Call::Arith {
                key: self.key.clone(),
                incr: self.incr,
                delta: self.delta,
            },
        )])
    }
}

impl Machine for IncrInitial {
    type Output = Option<u64>;
    type View = ();

    fn step(&mut self, cx: &Cx<'_>, input: Input) -> Step<Option<u64>> {
        let state = std::mem::replace(&mut self.state, State::Done);
        match (state, input) {
            (State::Start, Input::Start) => match cx.cluster.route(&self.key) {
                Ok(s) => {
                    self.server = s;
                    self.arith()
                }
                Err(e) => Step::Done(Err(e)),
            },
            (State::Arith, Input::Answers(a)) => {
                match (Answer::into_number(single(a)), self.initial) {
                    (Ok(Some(n)), _) => Step::Done(Ok(Some(n))),
                    (Ok(None), None) => Step::Done(Ok(None)),
                    (Ok(None), Some(init)) => {
                        self.state = State::Add;
                        Step::Send(vec![Request::new(
                            self.server,
                            Call::Store(Item {
                                key: self.key.clone(),
                                data: init.to_string().into(),
                                mode: StoreMode::Add,
                                flags: 0,
                                ttl: self.ttl,
                            }),
                        )])
                    }
                    (Err(e), _) => Step::Done(Err(e)),
                }
            }
            (State::Add, Input::Answers(a)) => match Answer::into_done(single(a)) {
                Ok(()) => Step::Done(Ok(self.initial)),
                // Someone created it first: count on top of theirs.
                Err(Error::NotStored) if self.tries < TRIES => self.arith(),
                Err(Error::NotStored) => Step::Done(Err(Error::CasRetriesExhausted {
                    key: String::from_utf8_lossy(&self.key).into_owned(),
                    attempts: self.tries,
                })),
                Err(e) => Step::Done(Err(e)),
            },
            (_, input) => out_of_order("incr with initial", &input),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::script::{at, cluster};
    use super::*;

    #[test]
    fn creates_then_counts_on_a_concurrent_creator() {
        let cl = cluster(2);
        let cx = at(&cl, 0);
        let mut m = IncrInitial::new(b"n", true, 5, Some(10), 0);
        let Step::Send(_) = m.step(&cx, Input::Start) else {
            panic!()
        };
        let Step::Send(r) = m.step(&cx, Input::Answers(vec![Ok(Answer::Number(None))])) else {
            panic!()
        };
        assert!(matches!(
            &r[0].call,
            Call::Store(Item {
                mode: StoreMode::Add,
                ..
            })
        ));
        let Step::Send(_) = m.step(&cx, Input::Answers(vec![Err(Error::NotStored)])) else {
            panic!()
        };
        let Step::Done(Ok(Some(15))) =
            m.step(&cx, Input::Answers(vec![Ok(Answer::Number(Some(15)))]))
        else {
            panic!()
        };
        let mut m = IncrInitial::new(b"n", true, 5, None, 0);
        m.step(&cx, Input::Start);
        let Step::Done(Ok(None)) = m.step(&cx, Input::Answers(vec![Ok(Answer::Number(None))]))
        else {
            panic!()
        };
    }
}
