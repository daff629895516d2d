//! The library's own tokio runtime: created on first use, shared by every
//! handle, never shut down (its threads end with the process).

use std::future::Future;
use std::sync::OnceLock;

use crate::result::{Error, Result, CLOISTER_RESULT_WRONG_THREAD};

/// Worker threads: callbacks run on these.
const WORKERS: usize = 2;

pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .thread_name("cloister-worker")
            .enable_all()
            .build()
            .expect("the cloister runtime could not start")
    })
}

/// Run `future` to completion on the library runtime, blocking the calling
/// (application) thread. Refused on a runtime thread, i.e. inside an event
/// callback, where blocking would deadlock the runtime.
pub(crate) fn block_on<F: Future>(future: F) -> Result<F::Output> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::new(
            CLOISTER_RESULT_WRONG_THREAD,
            "blocking cloister calls may not be made from an event callback \
             (a library thread); hand the work to an application thread",
        ));
    }
    Ok(runtime().block_on(future))
}
