//! The cross-process half of `get_or_set`, after a miss: one process takes a short fill lock
//! (`add` of `<key>:fill`) and loads, the others poll for its value (up to
//! [`FillOptions::wait`]) and load it themselves only if it never comes. The value is stored
//! with a jittered TTL, plainly or replicated: the same rule in both modes.

use super::replicated::{Put, Read, Write};
use super::{out_of_order, single, Answer, Call, Cx, Input, Item, Machine, Request, Rng, Step};
use crate::envelope::{Format, Kind, Stamp, ValueType};
use crate::error::Error;
use crate::logic::recipe::{backoff, fill_key, jitter_ttl, FillOptions, Fresh};
use crate::ops::Value;
use crate::protocol::text::StoreMode;
use crate::replication::Versioned;
use bytes::Bytes;
use std::time::Duration;

/// Plain or replicated: how the fill reads and stores the key.
pub use super::mode::Mode;

/// A value as `get_or_set` returns it: read or loaded.
#[derive(Debug, Clone, PartialEq)]
pub enum Got {
    /// A plain value.
    Plain(Value),
    /// A replicated value.
    Replicated(Versioned),
}

impl Got {
    /// As a plain [`Value`] (a replicated value's payload, with its flags).
    pub fn into_value(self) -> Value {
        match self {
            Got::Plain(v) => v,
            Got::Replicated(v) => Value {
                data: v.data,
                flags: v.flags,
                cas: None,
                ttl: None,
            },
        }
    }
}

#[derive(Debug)]
enum State {
    Start,
    Locking,
    Rechecking(Sub),
    Unlocking(Got),
    Waiting,
    Polling(Sub),
    Loading,
    Storing(Sub, Got),
    Dropping(Result<Got, Error>),
    Done,
}

/// A read or write run inside the fill.
#[derive(Debug)]
enum Sub {
    Get,
    Read(Box<Read>),
    Set,
    Write(Box<Write>),
}

/// The fill after a miss of `key`. Done with the value, read or loaded.
#[derive(Debug)]
pub struct Fill {
    mode: Mode,
    key: Bytes,
    lock_key: Bytes,
    token: Bytes,
    ttl: u32,
    opts: FillOptions,
    rng: Rng,
    held: bool,
    server: usize,
    lock_server: usize,
    attempts: u32,
    start: Duration,
    state: State,
}

impl Fill {
    /// Fill `key` (stored with `ttl`, jittered) in `mode`, the fill lock holding `token`.
    pub fn new(
        mode: Mode,
        key: &[u8],
        ttl: u32,
        opts: FillOptions,
        token: &str,
        seed: u64,
    ) -> Self {
        Fill {
            mode,
            key: Bytes::copy_from_slice(key),
            lock_key: fill_key(key).into(),
            token: Bytes::copy_from_slice(token.as_bytes()),
            ttl,
            opts,
            rng: Rng::new(seed),
            held: false,
            server: 0,
            lock_server: 0,
            attempts: 0,
            start: Duration::ZERO,
            state: State::Start,
        }
    }

    /// Start a read of the key (a plain get, or a replicated read machine).
    fn read(&mut self, cx: &Cx<'_>) -> (Sub, Step<Got>) {
        match &self.mode {
            Mode::Plain => (
                Sub::Get,
                Step::Send(vec![Request::new(
                    self.server,
                    Call::Get {
                        key: self.key.clone(),
                        cas: false,
                    },
                )]),
            ),
            Mode::Replicated(rep) => {
                let mut m = Read::new(rep.clone(), std::slice::from_ref(&self.key));
                let step = m.step(cx, Input::Start);
                (Sub::Read(Box::new(m)), relay_read(step))
            }
        }
    }

    /// Feed a read its answers: `Ok(Some)` a hit, `Ok(None)` a miss, `Err` more to send.
    fn reread(
        cx: &Cx<'_>,
        sub: Sub,
        server: usize,
        input: Input,
    ) -> Result<Result<Option<Got>, Error>, (Sub, Step<Got>)> {
        match (sub, input) {
            (Sub::Get, Input::Answers(a)) => {
                let v = Answer::into_value(single(a));
                cx.cluster.tally_read(server, &v);
                Ok(v.map(|v| v.map(Got::Plain)))
            }
            (Sub::Read(mut m), input) => match m.step(cx, input) {
                Step::Done(r) => Ok(r
                    .and_then(|mut v| v.pop().unwrap_or(Ok(None)))
                    .map(|v| v.map(Got::Replicated))),
                step => Err((Sub::Read(m), relay_read(step))),
            },
            (_, input) => Err((Sub::Get, out_of_order("get_or_set read", &input))),
        }
    }

    fn poll(&mut self, cx: &Cx<'_>) -> Step<Got> {
        let elapsed = cx.now.mono.saturating_sub(self.start);
        if elapsed >= self.opts.wait {
            self.state = State::Loading;
            return Step::Load;
        }
        self.attempts += 1;
        let pause = backoff(
            self.attempts,
            self.opts.poll,
            self.opts.poll * 8,
            0.5 + self.rng.unit() / 2.0,
        );
        self.state = State::Waiting;
        Step::Wait(pause.min(self.opts.wait - elapsed))
    }

    fn store(&mut self, cx: &Cx<'_>, fresh: Fresh) -> Step<Got> {
        let ttl = jitter_ttl(self.ttl, self.opts.ttl_jitter, self.rng.unit());
        match &self.mode {
            Mode::Plain => {
                let got = Got::Plain(Value {
                    data: fresh.data.clone().into(),
                    flags: fresh.flags,
                    cas: None,
                    ttl: None,
                });
                self.state = State::Storing(Sub::Set, got);
                Step::Send(vec![Request::new(
                    self.server,
                    Call::Store(Item {
                        key: self.key.clone(),
                        data: fresh.data.into(),
                        mode: StoreMode::Set,
                        flags: fresh.flags,
                        ttl,
                    }),
                )])
            }
            Mode::Replicated(rep) => {
                let (value_type, format) = fresh.typed.unwrap_or((ValueType::Bytes, Format::NONE));
                let payload: Bytes = fresh.data.into();
                let got = Got::Replicated(Versioned {
                    data: payload.clone(),
                    value_type,
                    format,
                    stamp: Stamp::default(),
                    enveloped: true,
                    flags: 0,
                });
                let put = Put {
                    key: self.key.clone(),
                    kind: Kind::Value,
                    value_type,
                    format,
                    payload,
                };
                let mut m = Write::new(rep.clone(), "write", vec![put], ttl);
                match m.step(cx, Input::Start) {
                    Step::Send(r) => {
                        self.state = State::Storing(Sub::Write(Box::new(m)), got);
                        Step::Send(r)
                    }
                    Step::Done(r) => self.stored(
                        r.and_then(|mut v| v.pop().unwrap_or(Ok(Default::default())))
                            .map(|_| got),
                    ),
                    _ => out_of_order("get_or_set write", &Input::Start),
                }
            }
        }
    }

    /// The value is stored (or failed): drop the fill lock if held, then finish.
    fn stored(&mut self, r: Result<Got, Error>) -> Step<Got> {
        if !self.held {
            self.state = State::Done;
            return Step::Done(r);
        }
        self.held = false;
        self.state = State::Dropping(r);
        Step::Send(vec![Request::new(
            self.lock_server,
            Call::Delete {
                key: self.lock_key.clone(),
            },
        )])
    }
}

fn relay_read(step: Step<Vec<Result<Option<Versioned>, Error>>>) -> Step<Got> {
    match step {
        Step::Send(r) => Step::Send(r),
        Step::Wait(d) => Step::Wait(d),
        _ => Step::Done(Err(Error::Client {
            server: String::new(),
            message: "replicated read ended early (a driver bug)".into(),
        })),
    }
}

impl Machine for Fill {
    type Output = Got;
    type View = ();

    fn step(&mut self, cx: &Cx<'_>, input: Input) -> Step<Got> {
        let state = std::mem::replace(&mut self.state, State::Done);
        match (state, input) {
            (State::Start, Input::Start) => {
                let route = cx
                    .cluster
                    .route(&self.key)
                    .and_then(|s| Ok((s, cx.cluster.route(&self.lock_key)?)));
                match route {
                    Ok((s, ls)) => {
                        self.server = s;
                        self.lock_server = ls;
                    }
                    Err(e) => return Step::Done(Err(e)),
                }
                self.state = State::Locking;
                Step::Send(vec![Request::new(
                    self.lock_server,
                    Call::Store(Item {
                        key: self.lock_key.clone(),
                        data: self.token.clone(),
                        mode: StoreMode::Add,
                        flags: 0,
                        ttl: self.opts.fill_lock_ttl.max(1),
                    }),
                )])
            }
            (State::Locking, Input::Answers(a)) => match Answer::into_done(single(a)) {
                Ok(()) => {
                    // Someone may have filled it between our miss and our lock.
                    self.held = true;
                    let (sub, step) = self.read(cx);
                    self.state = State::Rechecking(sub);
                    step
                }
                Err(Error::NotStored) => {
                    self.start = cx.now.mono;
                    self.poll(cx)
                }
                Err(e) => Step::Done(Err(e)),
            },
            (State::Rechecking(sub), input) => match Self::reread(cx, sub, self.server, input) {
                Ok(Ok(Some(got))) => {
                    self.held = false;
                    self.state = State::Unlocking(got);
                    Step::Send(vec![Request::new(
                        self.lock_server,
                        Call::Delete {
                            key: self.lock_key.clone(),
                        },
                    )])
                }
                Ok(Ok(None)) => {
                    self.state = State::Loading;
                    Step::Load
                }
                Ok(Err(e)) => self.stored(Err(e)),
                Err((sub, step)) => {
                    self.state = State::Rechecking(sub);
                    step
                }
            },
            (State::Unlocking(got), Input::Answers(_)) => Step::Done(Ok(got)),
            (State::Waiting, Input::Woke) => {
                let (sub, step) = self.read(cx);
                self.state = State::Polling(sub);
                step
            }
            (State::Polling(sub), input) => match Self::reread(cx, sub, self.server, input) {
                Ok(Ok(Some(got))) => Step::Done(Ok(got)),
                Ok(Ok(None)) => self.poll(cx),
                Ok(Err(e)) => Step::Done(Err(e)),
                Err((sub, step)) => {
                    self.state = State::Polling(sub);
                    step
                }
            },
            (State::Loading, Input::Loaded(fresh)) => match fresh {
                Ok(f) => self.store(cx, f),
                Err(e) => self.stored(Err(e)),
            },
            (State::Storing(Sub::Set, got), Input::Answers(a)) => {
                let r = Answer::into_done(single(a));
                cx.cluster.tally_store(self.server, &r);
                self.stored(r.map(|()| got))
            }
            (State::Storing(Sub::Write(mut m), got), input) => match m.step(cx, input) {
                Step::Done(r) => self.stored(
                    r.and_then(|mut v| v.pop().unwrap_or(Ok(Default::default())))
                        .map(|_| got),
                ),
                Step::Send(r) => {
                    self.state = State::Storing(Sub::Write(m), got);
                    Step::Send(r)
                }
                _ => out_of_order("get_or_set write", &Input::Woke),
            },
            (State::Dropping(r), Input::Answers(_)) => Step::Done(r),
            (_, input) => out_of_order("get_or_set", &input),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::script::{at, cluster};
    use super::*;

    #[test]
    fn the_lock_holder_loads_stores_and_unlocks() {
        let cl = cluster(2);
        let mut m = Fill::new(Mode::Plain, b"page", 100, FillOptions::default(), "tok", 5);
        let Step::Send(r) = m.step(&at(&cl, 0), Input::Start) else {
            panic!()
        };
        assert!(matches!(
            &r[0].call,
            Call::Store(Item {
                mode: StoreMode::Add,
                ..
            })
        ));
        let Step::Send(r) = m.step(&at(&cl, 1), Input::Answers(vec![Ok(Answer::Done)])) else {
            panic!()
        };
        assert!(matches!(r[0].call, Call::Get { .. }));
        let Step::Load = m.step(&at(&cl, 2), Input::Answers(vec![Ok(Answer::Value(None))])) else {
            panic!()
        };
        let Step::Send(r) = m.step(&at(&cl, 3), Input::Loaded(Ok(b"html".to_vec().into()))) else {
            panic!()
        };
        let Call::Store(Item { ttl, .. }) = &r[0].call else {
            panic!()
        };
        assert!((90..=110).contains(ttl));
        let Step::Send(r) = m.step(&at(&cl, 4), Input::Answers(vec![Ok(Answer::Done)])) else {
            panic!()
        };
        assert!(matches!(r[0].call, Call::Delete { .. }));
        let Step::Done(Ok(Got::Plain(v))) =
            m.step(&at(&cl, 5), Input::Answers(vec![Ok(Answer::Existed(true))]))
        else {
            panic!()
        };
        assert_eq!(&v.data[..], b"html");
    }

    #[test]
    fn a_waiter_polls_then_loads_itself_after_the_wait() {
        let cl = cluster(1);
        let opts = FillOptions {
            wait: Duration::from_millis(20),
            ..FillOptions::default()
        };
        let mut m = Fill::new(Mode::Plain, b"page", 0, opts, "tok", 5);
        m.step(&at(&cl, 0), Input::Start);
        let Step::Wait(_) = m.step(&at(&cl, 0), Input::Answers(vec![Err(Error::NotStored)])) else {
            panic!()
        };
        let Step::Send(_) = m.step(&at(&cl, 10), Input::Woke) else {
            panic!()
        };
        let Step::Wait(_) = m.step(&at(&cl, 10), Input::Answers(vec![Ok(Answer::Value(None))]))
        else {
            panic!()
        };
        let Step::Send(_) = m.step(&at(&cl, 25), Input::Woke) else {
            panic!()
        };
        let Step::Load = m.step(&at(&cl, 25), Input::Answers(vec![Ok(Answer::Value(None))])) else {
            panic!()
        };
        // Not holding the lock: stores, nothing to drop.
        let Step::Send(_) = m.step(&at(&cl, 26), Input::Loaded(Ok(b"x".to_vec().into()))) else {
            panic!()
        };
        let Step::Done(Ok(_)) = m.step(&at(&cl, 27), Input::Answers(vec![Ok(Answer::Done)])) else {
            panic!()
        };
    }

    #[test]
    fn a_failed_loader_drops_the_lock_and_reports() {
        let cl = cluster(1);
        let mut m = Fill::new(Mode::Plain, b"page", 0, FillOptions::default(), "tok", 5);
        m.step(&at(&cl, 0), Input::Start);
        m.step(&at(&cl, 0), Input::Answers(vec![Ok(Answer::Done)]));
        m.step(&at(&cl, 0), Input::Answers(vec![Ok(Answer::Value(None))]));
        let Step::Send(r) = m.step(
            &at(&cl, 0),
            Input::Loaded(Err(Error::Loader("db down".into()))),
        ) else {
            panic!()
        };
        assert!(matches!(r[0].call, Call::Delete { .. }));
        let Step::Done(Err(Error::Loader(_))) =
            m.step(&at(&cl, 0), Input::Answers(vec![Ok(Answer::Existed(true))]))
        else {
            panic!()
        };
    }
}
