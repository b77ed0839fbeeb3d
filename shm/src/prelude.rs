//! The types most programs use, and the [`Named`] trait that gives them
//! their constructors: `use shmipc::prelude::*;`.

pub use crate::{
    active_children, cpu_count, current_process, fork, spawn, Array, Barrier, ByteQueue,
    BytesConfig, Child, Condition, DictConfig, Event, JoinableQueue, ListConfig, Lock, Named,
    Options, Pipe, Pool, Process, Queue, RLock, RingConfig, Segment, Semaphore, SemaphoreConfig,
    Shared, SharedDict, SharedList, SpscQueue, TypedDict, TypedPipe, TypedPool, TypedQueue,
    Unlinker, Value,
};
pub use crate::{AtomicU32, AtomicU64};
