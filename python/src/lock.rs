//! The lock handle (`Client.lock`).

use super::*;

/// A held lock (from `Client.lock`). Released by `release()`, at the end of a `with` block,
/// or when garbage-collected; it expires after its timeout if its holder dies.
///
/// A lock belongs to the process that acquired it. A fork child inherits the object, not the
/// ownership: there it is not `held`, `release()` and `extend()` return False without a word
/// to the server, and garbage collection leaves it alone, so a child that leaves a `with`
/// block or exits never releases its parent's lock (the core's guard does nothing there when
/// dropped; `inherited` only keeps this wrapper from locking `inner`, which a parent thread
/// may have held at the moment of the fork).
#[pyclass(module = "multiput._native", name = "Lock", frozen)]
pub struct Lock {
    pub(crate) inner: Mutex<Option<multiput::recipes::Lock<blocking::Client>>>,
    pub(crate) name: Py<PyAny>,
    /// The fork generation (`multiput::fork`) of the process that acquired it.
    pub(crate) generation: u64,
}

impl Lock {
    /// Made by another process (this one is a fork child of the acquirer). Checked before
    /// `inner` is locked: a parent thread may have held that mutex at the moment of the fork.
    pub(crate) fn inherited(&self) -> bool {
        self.generation != multiput::fork::generation()
    }

    pub(crate) fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut multiput::recipes::Lock<blocking::Client>) -> Result<T, Error> + Send,
        absent: T,
    ) -> PyResult<T> {
        if self.inherited() {
            return Ok(absent);
        }
        let inner = &self.inner;
        let r = nogil(py, || {
            let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
            match guard.as_mut() {
                Some(l) => f(l),
                None => Ok(absent),
            }
        })?;
        r.map_err(|e| py_err(py, &e))
    }
}

#[pymethods]
impl Lock {
    /// The lock's name, as given.
    #[getter]
    fn name(&self, py: Python<'_>) -> Py<PyAny> {
        self.name.clone_ref(py)
    }

    /// This holder's unique owner token (None in a fork child: it holds nothing).
    #[getter]
    fn token(&self) -> Option<String> {
        if self.inherited() {
            return None;
        }
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref().map(|l| l.token().to_string())
    }

    /// The fencing token (a number larger than every earlier holder's), if asked for.
    #[getter]
    fn fence(&self) -> Option<u64> {
        if self.inherited() {
            return None;
        }
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref().and_then(|l| l.fence())
    }

    /// True until released (it does not ask the server; a lock past its timeout may be gone).
    /// False in a fork child: the lock is its parent's.
    #[getter]
    fn held(&self) -> bool {
        if self.inherited() {
            return false;
        }
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref().is_some_and(|l| l.is_held())
    }

    /// Release the lock if this holder still owns it: True released, False it had expired
    /// (and was left alone, it may be someone else's now) or this is a fork child of the
    /// holder (the lock stays its parent's).
    fn release(&self, py: Python<'_>) -> PyResult<bool> {
        self.with(py, |l| l.release(), false)
    }

    /// Give the lock a new timeout (seconds) if this holder still owns it.
    fn extend(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let ttl = timeout.ceil().clamp(1.0, f64::from(u32::MAX)) as u32;
        self.with(py, move |l| l.extend(ttl), false)
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.release(py)?;
        Ok(false)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let name = self
            .name
            .bind(py)
            .repr()
            .map(|r| r.to_string())
            .unwrap_or_default();
        let held = if self.held() { "True" } else { "False" };
        format!("<multiput.Lock {name} held={held}>")
    }
}
