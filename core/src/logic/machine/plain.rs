//! Plain calls (one copy of a key, on the server that owns it) as machines: one request to one
//! server ([`Single`]), or one request per server for many keys ([`Each`]). A driver that runs
//! machines (the JavaScript client over the WASM `Job`) then runs plain and replicated calls
//! through the same loop, and the core, not the binding, decides which one a call is.
//!
//! Both check keys (and stored values' sizes) before anything is sent, and count hits, misses
//! and sets in the cluster's metrics as the native clients do.

use super::{out_of_order, single, Answer, Call, Cx, Input, Item, Machine, Request, Step};
use crate::cluster::{merge, Cluster, Groups};
use crate::error::Error;
use crate::ops::Value;
use bytes::Bytes;

/// One call to the server that owns its key. Done with that server and the call's answer (a
/// server's refusal, such as [`Error::NotStored`], is the machine's error).
#[derive(Debug)]
pub struct Single {
    call: Option<Call>,
    server: usize,
}

/// The key of a single-key call, and the size of the value it stores.
fn target(call: &Call) -> Option<(&[u8], Option<usize>)> {
    match call {
        Call::Get { key, .. }
        | Call::Delete { key }
        | Call::Touch { key, .. }
        | Call::Arith { key, .. }
        | Call::CasDelete { key, .. } => Some((key, None)),
        Call::Store(it) | Call::StoreReturningCas(it) => Some((&it.key, Some(it.data.len()))),
        Call::GetMulti { .. } | Call::StoreItems(_) | Call::DeleteMulti { .. } => None,
    }
}

impl Single {
    /// `call` (a single-key call) to its key's owner.
    pub fn new(call: Call) -> Self {
        Single {
            call: Some(call),
            server: 0,
        }
    }

    fn start(&mut self, cl: &Cluster) -> Result<Request, Error> {
        let call = self
            .call
            .take()
            .ok_or_else(|| done_twice("a single call"))?;
        let (key, size) = target(&call).ok_or_else(|| Error::Client {
            server: String::new(),
            message: "a single call needs a single-key call (a driver bug)".into(),
        })?;
        self.server = cl.route(key)?;
        if let Some(n) = size {
            cl.check_value(n)?;
        }
        Ok(Request::new(self.server, call))
    }
}

fn done_twice(what: &str) -> Error {
    Error::Client {
        server: String::new(),
        message: format!("{what} started twice (a driver bug)"),
    }
}

impl Machine for Single {
    type Output = (usize, Answer);
    type View = ();

    fn step(&mut self, cx: &Cx<'_>, input: Input) -> Step<(usize, Answer)> {
        match input {
            Input::Start => match self.start(cx.cluster) {
                Ok(r) => Step::Send(vec![r]),
                Err(e) => Step::Done(Err(e)),
            },
            Input::Answers(a) => {
                let r = single(a);
                match &r {
                    Ok(Answer::Value(v)) => cx.cluster.tally_read(self.server, &Ok(v.as_ref())),
                    Ok(Answer::Done) | Ok(Answer::Cas(_)) => {
                        cx.cluster.tally_store(self.server, &Ok(()))
                    }
                    _ => {}
                }
                Step::Done(r.map(|a| (self.server, a)))
            }
            input => out_of_order("a single call", &input),
        }
    }
}

/// A multi-key call made of one call per server (see [`Each`]).
pub trait Batch {
    /// One key's part of the call (a key, or a store item).
    type Item: Clone;
    /// One key's result.
    type Out: Clone + Default;
    /// The key of an item.
    fn key(item: &Self::Item) -> &[u8];
    /// What refuses an item before it is sent, besides its key.
    fn check(_cl: &Cluster, _item: &Self::Item) -> Result<(), Error> {
        Ok(())
    }
    /// The call for the items one server owns.
    fn call(items: Vec<Self::Item>) -> Call;
    /// That call's answer, one result per item.
    fn split(a: Result<Answer, Error>) -> Result<Vec<Result<Self::Out, Error>>, Error>;
    /// Count one item's result in server `s`'s metrics.
    fn tally(_cl: &Cluster, _s: usize, _r: &Result<Self::Out, Error>) {}
}

/// Values of many keys: a multi-get per server.
#[derive(Debug)]
pub struct Gets;

impl Batch for Gets {
    type Item = Bytes;
    type Out = Option<Value>;
    fn key(k: &Bytes) -> &[u8] {
        k
    }
    fn call(keys: Vec<Bytes>) -> Call {
        Call::GetMulti {
            keys,
            cas: false,
            ttl: false,
        }
    }
    fn split(a: Result<Answer, Error>) -> Result<Vec<Result<Option<Value>, Error>>, Error> {
        Answer::into_values(a).map(|v| v.into_iter().map(Ok).collect())
    }
    fn tally(cl: &Cluster, s: usize, r: &Result<Option<Value>, Error>) {
        cl.tally_read(s, r);
    }
}

/// Values of many keys with their CAS uniques: a `gets` per server.
#[derive(Debug)]
pub struct GetsWithCas;

impl Batch for GetsWithCas {
    type Item = Bytes;
    type Out = Option<Value>;
    fn key(k: &Bytes) -> &[u8] {
        k
    }
    fn call(keys: Vec<Bytes>) -> Call {
        Call::GetMulti {
            keys,
            cas: true,
            ttl: false,
        }
    }
    fn split(a: Result<Answer, Error>) -> Result<Vec<Result<Option<Value>, Error>>, Error> {
        Gets::split(a)
    }
    fn tally(cl: &Cluster, s: usize, r: &Result<Option<Value>, Error>) {
        Gets::tally(cl, s, r)
    }
}

/// Many stores: pipelined per server.
#[derive(Debug)]
pub struct Stores;

impl Batch for Stores {
    type Item = Item;
    type Out = ();
    fn key(it: &Item) -> &[u8] {
        &it.key
    }
    fn check(cl: &Cluster, it: &Item) -> Result<(), Error> {
        cl.check_value(it.data.len())
    }
    fn call(items: Vec<Item>) -> Call {
        Call::StoreItems(items)
    }
    fn split(a: Result<Answer, Error>) -> Result<Vec<Result<(), Error>>, Error> {
        Answer::into_items(a)
    }
    fn tally(cl: &Cluster, s: usize, r: &Result<(), Error>) {
        cl.tally_store(s, r);
    }
}

/// Many deletes: pipelined per server; each result says whether the key existed.
#[derive(Debug)]
pub struct Deletes;

impl Batch for Deletes {
    type Item = Bytes;
    type Out = bool;
    fn key(k: &Bytes) -> &[u8] {
        k
    }
    fn call(keys: Vec<Bytes>) -> Call {
        Call::DeleteMulti { keys }
    }
    fn split(a: Result<Answer, Error>) -> Result<Vec<Result<bool, Error>>, Error> {
        Answer::into_existed_each(a)
    }
}

#[derive(Debug)]
enum EachState {
    Start,
    Sent,
    Done,
}

/// A multi-key call: every item checked (an invalid one gets its error and is not sent), the
/// others grouped by the server that owns their key, one call per server, all at once. Done
/// with one result per item, aligned with the items; a server's failure is the error of each
/// of its items, so one failed server does not hide the others' answers.
#[derive(Debug)]
pub struct Each<B: Batch> {
    items: Vec<B::Item>,
    out: Vec<Result<B::Out, Error>>,
    groups: Groups,
    state: EachState,
}

impl<B: Batch> Each<B> {
    /// The call over `items`.
    pub fn new(items: Vec<B::Item>) -> Self {
        Each {
            items,
            out: Vec::new(),
            groups: Vec::new(),
            state: EachState::Start,
        }
    }
}

impl<B: Batch> Each<B> {
    /// The server each item was sent to, by item index (items refused before sending have
    /// none), once the call was sent.
    pub fn servers(&self) -> Vec<Option<usize>> {
        let n = self
            .groups
            .iter()
            .flat_map(|(_, idx)| idx.iter().max())
            .max();
        let mut out = vec![None; n.map_or(0, |&m| m + 1)];
        for (s, idx) in &self.groups {
            for &i in idx {
                out[i] = Some(*s);
            }
        }
        out
    }
}

impl<B: Batch> Machine for Each<B> {
    type Output = Vec<Result<B::Out, Error>>;
    type View = ();

    fn step(&mut self, cx: &Cx<'_>, input: Input) -> Step<Self::Output> {
        let cl = cx.cluster;
        match (std::mem::replace(&mut self.state, EachState::Done), input) {
            (EachState::Start, Input::Start) => {
                let items = std::mem::take(&mut self.items);
                let (out, groups) = cl.plan(
                    items.len(),
                    |i| B::key(&items[i]),
                    |i| B::check(cl, &items[i]),
                    B::Out::default(),
                );
                self.out = out;
                if groups.is_empty() {
                    return Step::Done(Ok(std::mem::take(&mut self.out)));
                }
                // Each item goes to one server: moved into its call, not cloned.
                let mut items: Vec<Option<B::Item>> = items.into_iter().map(Some).collect();
                let requests = groups
                    .iter()
                    .map(|(s, idx)| {
                        let call = idx.iter().filter_map(|&i| items[i].take()).collect();
                        Request::new(*s, B::call(call))
                    })
                    .collect();
                self.groups = groups;
                self.state = EachState::Sent;
                Step::Send(requests)
            }
            (EachState::Sent, Input::Answers(a)) => {
                let rs = a.into_iter().map(B::split).collect();
                merge(&mut self.out, &self.groups, rs);
                for (s, idx) in &self.groups {
                    idx.iter().for_each(|&i| B::tally(cl, *s, &self.out[i]));
                }
                Step::Done(Ok(std::mem::take(&mut self.out)))
            }
            (_, input) => out_of_order("a multi-key call", &input),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::script::{at, cluster};
    use super::*;
    use crate::protocol::text::StoreMode;

    fn value(data: &str) -> Value {
        Value {
            data: Bytes::copy_from_slice(data.as_bytes()),
            flags: 0,
            cas: None,
            ttl: None,
        }
    }

    #[test]
    fn single_goes_to_the_owner_and_ends_with_its_answer() {
        let cl = cluster(3);
        let cx = at(&cl, 0);
        let owner = cl.route(b"k").unwrap();
        let mut m = Single::new(Call::Get {
            key: Bytes::from_static(b"k"),
            cas: true,
        });
        let Step::Send(r) = m.step(&cx, Input::Start) else {
            panic!()
        };
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].server, owner);
        assert!(matches!(r[0].call, Call::Get { cas: true, .. }));
        let Step::Done(Ok((s, Answer::Value(Some(v))))) = m.step(
            &cx,
            Input::Answers(vec![Ok(Answer::Value(Some(value("a"))))]),
        ) else {
            panic!()
        };
        assert_eq!((s, &v.data[..]), (owner, &b"a"[..]));
        assert_eq!(cl.metrics().total.hits, 1);
    }

    #[test]
    fn single_refuses_before_sending_and_passes_refusals_on() {
        let cl = cluster(2);
        let cx = at(&cl, 0);
        let mut m = Single::new(Call::Delete {
            key: Bytes::from_static(b"bad key"),
        });
        let Step::Done(Err(Error::InvalidKey { .. })) = m.step(&cx, Input::Start) else {
            panic!()
        };
        let big = Item {
            key: Bytes::from_static(b"k"),
            data: vec![0u8; 1024 * 1024 + 1].into(),
            mode: StoreMode::Set,
            flags: 0,
            ttl: 0,
        };
        let mut m = Single::new(Call::Store(big));
        let Step::Done(Err(Error::ValueTooLarge { .. })) = m.step(&cx, Input::Start) else {
            panic!()
        };
        let mut m = Single::new(Call::Touch {
            key: Bytes::from_static(b"k"),
            ttl: 5,
        });
        let Step::Send(_) = m.step(&cx, Input::Start) else {
            panic!()
        };
        let Step::Done(Err(Error::NotStored)) =
            m.step(&cx, Input::Answers(vec![Err(Error::NotStored)]))
        else {
            panic!()
        };
        let mut m = Single::new(Call::GetMulti {
            keys: vec![],
            cas: false,
            ttl: false,
        });
        let Step::Done(Err(Error::Client { .. })) = m.step(&cx, Input::Start) else {
            panic!()
        };
        let Step::Done(Err(Error::Client { .. })) = m.step(&cx, Input::Woke) else {
            panic!()
        };
    }

    #[test]
    fn each_groups_by_server_and_aligns_results() {
        let cl = cluster(3);
        let cx = at(&cl, 0);
        let keys: Vec<Bytes> = (0..30)
            .map(|i| Bytes::from(format!("k{i}")))
            .chain([Bytes::from_static(b"bad key")])
            .collect();
        let mut m = Each::<Gets>::new(keys.clone());
        let Step::Send(r) = m.step(&cx, Input::Start) else {
            panic!()
        };
        assert!(r.len() > 1, "30 keys over 3 servers");
        // Each server is asked once, for exactly the keys it owns, in the callers' order.
        let mut asked = Vec::new();
        let mut answers = Vec::new();
        for req in &r {
            let Call::GetMulti { keys: ks, .. } = &req.call else {
                panic!()
            };
            assert!(ks.iter().all(|k| cl.route(k).unwrap() == req.server));
            asked.extend(ks.iter().cloned());
            if req.server == r[0].server {
                answers.push(Err(Error::NotFound));
            } else {
                let v = ks
                    .iter()
                    .map(|k| Some(value(std::str::from_utf8(k).unwrap())))
                    .collect();
                answers.push(Ok(Answer::Values(v)));
            }
        }
        assert_eq!(asked.len(), 30);
        let failed = r[0].server;
        let Step::Done(Ok(out)) = m.step(&cx, Input::Answers(answers)) else {
            panic!()
        };
        assert_eq!(out.len(), 31);
        for (k, r) in keys.iter().zip(&out) {
            match cl.route(k) {
                Err(_) => assert!(matches!(r, Err(Error::InvalidKey { .. }))),
                Ok(s) if s == failed => assert!(matches!(r, Err(Error::NotFound))),
                Ok(_) => assert_eq!(&r.as_ref().unwrap().as_ref().unwrap().data, k),
            }
        }
    }

    #[test]
    fn each_stores_and_deletes() {
        let cl = cluster(2);
        let cx = at(&cl, 0);
        let item = |k: &'static [u8], n: usize| Item {
            key: Bytes::from_static(k),
            data: vec![b'x'; n].into(),
            mode: StoreMode::Set,
            flags: 0,
            ttl: 0,
        };
        let mut m = Each::<Stores>::new(vec![item(b"a", 1), item(b"b", 2 << 20)]);
        let Step::Send(r) = m.step(&cx, Input::Start) else {
            panic!()
        };
        assert_eq!(r.len(), 1);
        let Step::Done(Ok(out)) =
            m.step(&cx, Input::Answers(vec![Ok(Answer::Items(vec![Ok(())]))]))
        else {
            panic!()
        };
        assert!(out[0].is_ok() && matches!(out[1], Err(Error::ValueTooLarge { .. })));

        let mut m = Each::<Deletes>::new(vec![Bytes::from_static(b"a")]);
        let Step::Send(r) = m.step(&cx, Input::Start) else {
            panic!()
        };
        assert!(matches!(&r[0].call, Call::DeleteMulti { keys } if keys.len() == 1));
        let Step::Done(Ok(out)) = m.step(
            &cx,
            Input::Answers(vec![Ok(Answer::ExistedEach(vec![Ok(false)]))]),
        ) else {
            panic!()
        };
        assert!(matches!(out[..], [Ok(false)]));

        // Nothing to send: done at once.
        let mut m = Each::<Deletes>::new(vec![Bytes::from_static(b"bad key")]);
        let Step::Done(Ok(out)) = m.step(&cx, Input::Start) else {
            panic!()
        };
        assert!(matches!(out[..], [Err(Error::InvalidKey { .. })]));
    }
}
