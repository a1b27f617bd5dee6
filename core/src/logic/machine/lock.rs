//! Locks built on `add`: acquire (on the name's owner, or on a majority of its replicas),
//! release (compare-and-delete on the unique the acquisition wrote), extend (compare-and-swap
//! of the same token with a new TTL) and the fencing counter.

use super::{
    out_of_order, pause_before, single, Answer, Call, Cx, Input, Item, Machine, Request, Rng, Step,
};
use crate::error::Error;
use crate::logic::recipe::{check_ttl, fence_key, quorum_validity, LockOptions};
use crate::protocol::text::StoreMode;
use bytes::Bytes;
use std::time::Duration;

/// A lock as acquired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquired {
    /// `(server, CAS unique of the token there)` for every server it is held on.
    pub holds: Vec<(usize, u64)>,
    /// How many holds keep the lock.
    pub quorum: usize,
    /// The fencing token, if asked for.
    pub fence: Option<u64>,
}

#[derive(Debug)]
enum State {
    Start,
    Adding {
        began: Duration,
    },
    GivingBack {
        failure: Option<Error>,
        contended: bool,
    },
    Fencing(NextFence, Acquired),
    Waiting,
    Done,
}

/// Acquire a lock: `add` of the owner token on each of `servers` at once, retried with jittered
/// backoff for up to [`LockOptions::wait`]. Done with the holds, [`Error::LockNotAcquired`], or
/// the error of an unreachable server (a lock is never taken elsewhere).
#[derive(Debug)]
pub struct Acquire {
    name: Bytes,
    token: Bytes,
    servers: Vec<usize>,
    quorum: usize,
    opts: LockOptions,
    rng: Rng,
    attempts: u32,
    start: Duration,
    state: State,
}

impl Acquire {
    /// Lock `name` on its ring owner with owner token `token`.
    pub fn single(
        cx: &Cx<'_>,
        name: &[u8],
        token: &str,
        opts: LockOptions,
        seed: u64,
    ) -> Result<Self, Error> {
        let s = cx.cluster.route(name)?;
        Ok(Self::on(name, token, vec![s], 1, opts, seed))
    }

    /// Lock `name` on a majority of the first `replicas` servers of its preference list.
    pub fn quorum(
        cx: &Cx<'_>,
        name: &[u8],
        token: &str,
        replicas: usize,
        opts: LockOptions,
        seed: u64,
    ) -> Result<Self, Error> {
        cx.cluster.check_key(name)?;
        if replicas == 0 || replicas > cx.cluster.len() {
            return Err(Error::Config(format!(
                "a quorum lock needs between 1 and {} servers, not {replicas}",
                cx.cluster.len()
            )));
        }
        let servers = cx.cluster.ring().preference_list(name, replicas);
        Ok(Self::on(name, token, servers, replicas / 2 + 1, opts, seed))
    }

    fn on(
        name: &[u8],
        token: &str,
        servers: Vec<usize>,
        quorum: usize,
        opts: LockOptions,
        seed: u64,
    ) -> Self {
        Acquire {
            name: Bytes::copy_from_slice(name),
            token: Bytes::copy_from_slice(token.as_bytes()),
            servers,
            quorum,
            opts,
            rng: Rng::new(seed),
            attempts: 0,
            start: Duration::ZERO,
            state: State::Start,
        }
    }

    fn attempt(&mut self, now: Duration) -> Step<Acquired> {
        self.attempts += 1;
        self.state = State::Adding { began: now };
        let add = Item {
            key: self.name.clone(),
            data: self.token.clone(),
            mode: StoreMode::Add,
            flags: 0,
            ttl: self.opts.ttl,
        };
        Step::Send(
            self.servers
                .iter()
                .map(|&s| Request::new(s, Call::StoreReturningCas(add.clone())))
                .collect(),
        )
    }

    fn after_give_back(
        &mut self,
        cx: &Cx<'_>,
        failure: Option<Error>,
        contended: bool,
    ) -> Step<Acquired> {
        // Unreachable servers (not a holder) keep us from a majority: say so at once, never
        // lock elsewhere.
        if let (Some(e), false) = (failure, contended) {
            self.state = State::Done;
            return Step::Done(Err(e));
        }
        let waited = cx.now.mono.saturating_sub(self.start);
        if waited >= self.opts.wait {
            self.state = State::Done;
            return Step::Done(Err(Error::LockNotAcquired {
                name: String::from_utf8_lossy(&self.name).into_owned(),
                attempts: self.attempts,
                waited,
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
            self.opts.wait,
        ))
    }
}

impl Machine for Acquire {
    type Output = Acquired;
    type View = ();

    fn step(&mut self, cx: &Cx<'_>, input: Input) -> Step<Acquired> {
        let state = std::mem::replace(&mut self.state, State::Done);
        match (state, input) {
            (State::Start, Input::Start) => {
                if let Err(e) = check_ttl(self.opts.ttl) {
                    return Step::Done(Err(e));
                }
                self.start = cx.now.mono;
                self.attempt(cx.now.mono)
            }
            (State::Adding { began }, Input::Answers(answers)) => {
                let mut holds = Vec::new();
                let mut failure = None;
                let mut contended = false;
                for (&s, r) in self.servers.iter().zip(answers) {
                    match Answer::into_cas(r) {
                        Ok(cas) => holds.push((s, cas)),
                        Err(Error::NotStored | Error::Exists) => contended = true,
                        Err(e) => failure = failure.or(Some(e)),
                    }
                }
                let valid = self.quorum == 1
                    || quorum_validity(self.opts.ttl, cx.now.mono.saturating_sub(began)).is_some();
                if holds.len() >= self.quorum && valid {
                    let acquired = Acquired {
                        holds,
                        quorum: self.quorum,
                        fence: None,
                    };
                    if !self.opts.fencing {
                        return Step::Done(Ok(acquired));
                    }
                    let mut fence = NextFence::new(&self.name);
                    return match fence.step(cx, Input::Start) {
                        Step::Send(r) => {
                            self.state = State::Fencing(fence, acquired);
                            Step::Send(r)
                        }
                        Step::Done(r) => Step::Done(r.map(|f| Acquired {
                            fence: Some(f),
                            ..acquired
                        })),
                        _ => out_of_order("lock fence", &Input::Start),
                    };
                }
                // Not enough: give back what we took, so others can get a majority.
                if holds.is_empty() {
                    return self.after_give_back(cx, failure, contended);
                }
                self.state = State::GivingBack { failure, contended };
                Step::Send(
                    holds
                        .iter()
                        .map(|&(s, cas)| {
                            Request::new(
                                s,
                                Call::CasDelete {
                                    key: self.name.clone(),
                                    cas,
                                },
                            )
                        })
                        .collect(),
                )
            }
            (State::GivingBack { failure, contended }, Input::Answers(_)) => {
                self.after_give_back(cx, failure, contended)
            }
            (State::Fencing(mut fence, acquired), input @ Input::Answers(_)) => {
                match fence.step(cx, input) {
                    Step::Send(r) => {
                        self.state = State::Fencing(fence, acquired);
                        Step::Send(r)
                    }
                    Step::Done(r) => Step::Done(r.map(|f| Acquired {
                        fence: Some(f),
                        ..acquired
                    })),
                    _ => out_of_order("lock fence", &Input::Woke),
                }
            }
            (State::Waiting, Input::Woke) => self.attempt(cx.now.mono),
            (_, input) => out_of_order("lock", &input),
        }
    }
}

#[derive(Debug)]
enum FenceState {
    Start,
    Incr,
    Add,
    Done,
}

/// The next fencing token of a lock: `incr` of its counter, created with `add` at 1 when
/// missing (another creator winning the `add` means: increment theirs).
#[derive(Debug)]
pub struct NextFence {
    key: Bytes,
    server: usize,
    tries: u32,
    state: FenceState,
}

impl NextFence {
    /// The fence counter of lock `name`.
    pub fn new(name: &[u8]) -> Self {
        NextFence {
            key: fence_key(name).into(),
            server: 0,
            tries: 0,
            state: FenceState::Start,
        }
    }

    fn incr(&mut self) -> Step<u64> {
        self.tries += 1;
        self.state = FenceState::Incr;
        Step::Send(vec![Request::new(
            self.server,
            Call::Arith {
                key: self.key.clone(),
                incr: true,
                delta: 1,
            },
        )])
    }
}

impl Machine for NextFence {
    type Output = u64;
    type View = ();

    fn step(&mut self, cx: &Cx<'_>, input: Input) -> Step<u64> {
        let state = std::mem::replace(&mut self.state, FenceState::Done);
        match (state, input) {
            (FenceState::Start, Input::Start) => match cx.cluster.route(&self.key) {
                Ok(s) => {
                    self.server = s;
                    self.incr()
                }
                Err(e) => Step::Done(Err(e)),
            },
            (FenceState::Incr, Input::Answers(a)) => match Answer::into_number(single(a)) {
                Ok(Some(n)) => Step::Done(Ok(n)),
                Ok(None) => {
                    self.state = FenceState::Add;
                    Step::Send(vec![Request::new(
                        self.server,
                        Call::Store(Item {
                            key: self.key.clone(),
                            data: Bytes::from_static(b"1"),
                            mode: StoreMode::Add,
                            flags: 0,
                            ttl: 0,
                        }),
                    )])
                }
                Err(e) => Step::Done(Err(e)),
            },
            (FenceState::Add, Input::Answers(a)) => match Answer::into_done(single(a)) {
                Ok(()) => Step::Done(Ok(1)),
                // Another holder created it: increment that.
                Err(Error::NotStored) if self.tries < 3 => self.incr(),
                Err(Error::NotStored) => Step::Done(Err(Error::CasRetriesExhausted {
                    key: String::from_utf8_lossy(&self.key).into_owned(),
                    attempts: self.tries,
                })),
                Err(e) => Step::Done(Err(e)),
            },
            (_, input) => out_of_order("lock fence", &input),
        }
    }
}

/// Release a lock: compare-and-delete on every server it is held on. `Ok(true)` when at least
/// its quorum was released; `Ok(false)` when it had expired there (and was left alone).
#[derive(Debug)]
pub struct Release {
    name: Bytes,
    holds: Vec<(usize, u64)>,
    quorum: usize,
    sent: bool,
}

impl Release {
    /// Release `name` held as `holds`, kept by `quorum` of them.
    pub fn new(name: &[u8], holds: &[(usize, u64)], quorum: usize) -> Self {
        Release {
            name: Bytes::copy_from_slice(name),
            holds: holds.to_vec(),
            quorum,
            sent: false,
        }
    }
}

impl Machine for Release {
    type Output = bool;
    type View = ();

    fn step(&mut self, _: &Cx<'_>, input: Input) -> Step<bool> {
        match (self.sent, input) {
            (false, Input::Start) => {
                self.sent = true;
                Step::Send(
                    self.holds
                        .iter()
                        .map(|&(s, cas)| {
                            Request::new(
                                s,
                                Call::CasDelete {
                                    key: self.name.clone(),
                                    cas,
                                },
                            )
                        })
                        .collect(),
                )
            }
            (true, Input::Answers(answers)) => {
                let mut released = 0;
                let mut failure = None;
                for r in answers {
                    match Answer::into_done(r) {
                        Ok(()) => released += 1,
                        Err(Error::Exists | Error::NotFound) => {}
                        Err(e) => failure = failure.or(Some(e)),
                    }
                }
                Step::Done(match failure {
                    Some(e) if released < self.quorum => Err(e),
                    _ => Ok(released >= self.quorum),
                })
            }
            (_, input) => out_of_order("lock release", &input),
        }
    }
}

/// What an extend did: the holds that remain (with their new uniques) and whether the lock
/// is still held (at least its quorum remains).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extended {
    /// The holds kept.
    pub holds: Vec<(usize, u64)>,
    /// Still held.
    pub held: bool,
}

/// Give a lock a new TTL: compare-and-swap of its token on every server it is held on.
#[derive(Debug)]
pub struct Extend {
    name: Bytes,
    token: Bytes,
    holds: Vec<(usize, u64)>,
    quorum: usize,
    ttl: u32,
    sent: bool,
}

impl Extend {
    /// Extend `name` (owner token `token`, held as `holds`, kept by `quorum`) to `ttl` seconds.
    pub fn new(name: &[u8], token: &str, holds: &[(usize, u64)], quorum: usize, ttl: u32) -> Self {
        Extend {
            name: Bytes::copy_from_slice(name),
            token: Bytes::copy_from_slice(token.as_bytes()),
            holds: holds.to_vec(),
            quorum,
            ttl,
            sent: false,
        }
    }
}

impl Machine for Extend {
    type Output = Extended;
    type View = ();

    fn step(&mut self, _: &Cx<'_>, input: Input) -> Step<Extended> {
        match (self.sent, input) {
            (false, Input::Start) => {
                if let Err(e) = check_ttl(self.ttl) {
                    return Step::Done(Err(e));
                }
                self.sent = true;
                Step::Send(
                    self.holds
                        .iter()
                        .map(|&(s, cas)| {
                            Request::new(
                                s,
                                Call::StoreReturningCas(Item {
                                    key: self.name.clone(),
                                    data: self.token.clone(),
                                    mode: StoreMode::Cas(cas),
                                    flags: 0,
                                    ttl: self.ttl,
                                }),
                            )
                        })
                        .collect(),
                )
            }
            (true, Input::Answers(answers)) => {
                let mut kept = Vec::new();
                let mut failure = None;
                for (&(s, _), r) in self.holds.iter().zip(answers) {
                    match Answer::into_cas(r) {
                        Ok(cas) => kept.push((s, cas)),
                        Err(Error::Exists | Error::NotFound) => {}
                        Err(e) => failure = failure.or(Some(e)),
                    }
                }
                if kept.len() >= self.quorum {
                    return Step::Done(Ok(Extended {
                        holds: kept,
                        held: true,
                    }));
                }
                match failure {
                    Some(e) => Step::Done(Err(e)),
                    None => Step::Done(Ok(Extended {
                        holds: kept,
                        held: false,
                    })),
                }
            }
            (_, input) => out_of_order("lock extend", &input),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::script::{at, cluster};
    use super::*;

    #[test]
    fn quorum_lock_gives_back_a_minority_and_retries() {
        let cl = cluster(3);
        let cx = at(&cl, 0);
        let opts = LockOptions::new(10, Duration::from_millis(100));
        let mut m = Acquire::quorum(&cx, b"job", "t", 3, opts, 3).unwrap();
        let Step::Send(r) = m.step(&cx, Input::Start) else {
            panic!()
        };
        assert_eq!(r.len(), 3);
        let answers = vec![
            Ok(Answer::Cas(9)),
            Err(Error::NotStored),
            Err(Error::NotStored),
        ];
        let Step::Send(back) = m.step(&at(&cl, 1), Input::Answers(answers)) else {
            panic!()
        };
        assert!(matches!(
            back[..],
            [Request {
                call: Call::CasDelete { cas: 9, .. },
                ..
            }]
        ));
        let Step::Wait(_) = m.step(&at(&cl, 2), Input::Answers(vec![Ok(Answer::Done)])) else {
            panic!()
        };
        let Step::Send(_) = m.step(&at(&cl, 50), Input::Woke) else {
            panic!()
        };
        let answers = vec![
            Ok(Answer::Cas(1)),
            Ok(Answer::Cas(2)),
            Err(Error::NotStored),
        ];
        let Step::Done(Ok(a)) = m.step(&at(&cl, 51), Input::Answers(answers)) else {
            panic!()
        };
        assert_eq!(a.holds.len(), 2);
    }

    #[test]
    fn an_unreachable_owner_fails_at_once() {
        let cl = cluster(2);
        let cx = at(&cl, 0);
        let mut m = Acquire::single(
            &cx,
            b"job",
            "t",
            LockOptions::new(10, Duration::from_secs(5)),
            1,
        )
        .unwrap();
        m.step(&cx, Input::Start);
        let down = Error::ServerDown {
            server: "x".into(),
            retry_in: Duration::from_secs(1),
        };
        let Step::Done(Err(Error::ServerDown { .. })) =
            m.step(&cx, Input::Answers(vec![Err(down)]))
        else {
            panic!()
        };
    }

    #[test]
    fn fencing_creates_the_counter_when_missing() {
        let cl = cluster(1);
        let cx = at(&cl, 0);
        let mut m = Acquire::single(
            &cx,
            b"job",
            "t",
            LockOptions::new(10, Duration::ZERO).fencing(),
            1,
        )
        .unwrap();
        m.step(&cx, Input::Start);
        let Step::Send(r) = m.step(&cx, Input::Answers(vec![Ok(Answer::Cas(4))])) else {
            panic!()
        };
        assert!(matches!(r[0].call, Call::Arith { .. }));
        let Step::Send(r) = m.step(&cx, Input::Answers(vec![Ok(Answer::Number(None))])) else {
            panic!()
        };
        assert!(matches!(
            r[0].call,
            Call::Store(Item {
                mode: StoreMode::Add,
                ..
            })
        ));
        let Step::Done(Ok(a)) = m.step(&cx, Input::Answers(vec![Ok(Answer::Done)])) else {
            panic!()
        };
        assert_eq!(a.fence, Some(1));
    }

    #[test]
    fn release_and_extend_count_the_quorum() {
        let cl = cluster(3);
        let cx = at(&cl, 0);
        let mut r = Release::new(b"job", &[(0, 1), (1, 2), (2, 3)], 2);
        r.step(&cx, Input::Start);
        let Step::Done(Ok(true)) = r.step(
            &cx,
            Input::Answers(vec![Ok(Answer::Done), Err(Error::Exists), Ok(Answer::Done)]),
        ) else {
            panic!()
        };
        let mut e = Extend::new(b"job", "t", &[(0, 1), (1, 2)], 2, 5);
        e.step(&cx, Input::Start);
        let Step::Done(Ok(x)) = e.step(
            &cx,
            Input::Answers(vec![Ok(Answer::Cas(7)), Err(Error::NotFound)]),
        ) else {
            panic!()
        };
        assert_eq!(
            x,
            Extended {
                holds: vec![(0, 7)],
                held: false
            }
        );
    }
}
